/**
 * `pnpm compose:init [dir]`: prepares the Docker Compose network's keys and environment files
 * (see ./compose-env.ts) in `dir` (default `.tessera-compose` in the repository), which
 * docker-compose.yml mounts. Safe to run again: existing keys are kept, env files rewritten.
 */
import { chown } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeComposeEnvironment } from "./compose-env.js";
import { SERVICES } from "./services.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const dir = resolve(process.argv[2] ?? join(repoRoot, ".tessera-compose"));
const written = await writeComposeEnvironment(dir);
// The containers run as TESSERA_UID:TESSERA_GID (default 1000:1000, the images' `node` user) and
// must read their key and write their data; root can hand the folders to that user.
const uid = Number(process.env.TESSERA_UID ?? 1000);
const gid = Number(process.env.TESSERA_GID ?? 1000);
if (process.getuid?.() === 0) {
  for (const service of SERVICES) {
    await chown(join(dir, service.name), uid, gid);
    await chown(join(dir, service.name, "key.json"), uid, gid);
  }
} else if (process.getuid?.() !== uid) {
  console.log(
    `note: the containers run as uid ${uid}; run \`TESSERA_UID=$(id -u) TESSERA_GID=$(id -g) docker compose up\` so they can read the keys made here`,
  );
}
console.log(`compose keys and environment files in ${dir} (${written.length} processes)`);
