import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { withConfigReference } from "./config-reference.js";

test("README's configuration reference matches what the processes parse (run `pnpm run docs:config`)", () => {
  const readme = readFileSync(
    fileURLToPath(new URL("../../../README.md", import.meta.url)),
    "utf8",
  );
  assert.equal(readme, withConfigReference(readme));
  for (const variable of ["TESSERA_DATA_DIR", "MAX_MESSAGE_BYTES", "WALLET_URL", "REGISTRY_ROLE"]) {
    assert.ok(readme.includes(`\`${variable}\``), variable);
  }
});
