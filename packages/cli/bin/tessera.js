#!/usr/bin/env node
// Committed launcher for the built CLI: pnpm links a package's bins at install time, before
// `dist/` exists, so the bin must be a file that is always there.
const entry = new URL("../dist/main.js", import.meta.url);
try {
  await import(entry.href);
} catch (error) {
  if (error?.code !== "ERR_MODULE_NOT_FOUND" || !String(error.message).includes(entry.pathname)) {
    throw error;
  }
  process.stderr.write("tessera: error: the CLI is not built yet; run `pnpm build` first\n");
  process.exitCode = 1;
}
