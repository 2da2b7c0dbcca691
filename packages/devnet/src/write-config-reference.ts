import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { withConfigReference } from "./config-reference.js";

// `pnpm run docs:config`: rewrites the configuration reference in the repository's README.md.
const readmePath = fileURLToPath(new URL("../../../README.md", import.meta.url));
writeFileSync(readmePath, withConfigReference(readFileSync(readmePath, "utf8")));
