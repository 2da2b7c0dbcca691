// `pnpm start`: runs the local Tessera network until Ctrl-C. The only module with side effects.
import { fileURLToPath } from "node:url";
import { loadDevnetConfigOrExit } from "./config.js";
import { createLauncher } from "./launcher.js";
import { formatReadyBanner, formatResult } from "./ready-banner.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const config = loadDevnetConfigOrExit(process.env, {
  repoRoot,
  isTTY: process.stdout.isTTY === true,
});
const launcher = createLauncher({ repoRoot, ...config });

// First signal: stop in order. Second: kill whatever is left.
let signalsSeen = 0;
const onSignal = () => {
  signalsSeen += 1;
  if (signalsSeen === 1) void launcher.stop();
  else launcher.kill();
};
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, onSignal);

launcher.start().then(
  (services) => process.stdout.write(formatReadyBanner({ services, dataDir: config.dataDir })),
  () => {
    // The outcome below reports it.
  },
);
const result = await launcher.finished;
if (result.reason === "stopped") process.stdout.write(formatResult(result));
else process.stderr.write(formatResult(result));
process.exitCode = result.exitCode;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.off(signal, onSignal);
