import { computeNodeConfigSpec } from "@tessera/compute-node/config";
import { gatewayConfigSpec } from "@tessera/gateway/config";
import { jobServerConfigSpec } from "@tessera/job-server/config";
import { registryConfigSpec } from "@tessera/registry/config";
import { type ConfigSpec, describeConfig, serverConfigSpec } from "@tessera/runtime";
import { walletConfigSpec } from "@tessera/wallet/config";
import { devnetConfigSpec } from "./config.js";

/** Markers around the generated configuration reference in README.md. */
export const CONFIG_REFERENCE_START = "<!-- config-reference:start (pnpm run docs:config) -->";
export const CONFIG_REFERENCE_END = "<!-- config-reference:end -->";

/** A service's own variables: those it does not share unchanged with every other service. */
function ownVariables(spec: ConfigSpec): ConfigSpec {
  const shared: ConfigSpec = serverConfigSpec;
  return Object.fromEntries(Object.entries(spec).filter(([name, v]) => shared[name] !== v));
}

const sections: readonly [title: string, spec: ConfigSpec][] = [
  ["`pnpm start` (the devnet launcher)", devnetConfigSpec({ repoRoot: "<repo>", isTTY: false })],
  ["every service", serverConfigSpec],
  ["job-server (also every service's)", ownVariables(jobServerConfigSpec)],
  ["gateway (also every service's)", ownVariables(gatewayConfigSpec)],
  ["registry (also every service's)", ownVariables(registryConfigSpec)],
  ["compute-node (also every service's)", ownVariables(computeNodeConfigSpec)],
  ["wallet (also every service's)", ownVariables(walletConfigSpec)],
];

/**
 * The configuration reference of every process, rendered from the same specs the processes
 * parse at start, so the README cannot drift from the code.
 */
export function renderConfigReference(): string {
  const body = sections.map(([title, spec]) => `#### ${title}\n\n${describeConfig(spec)}`);
  return [CONFIG_REFERENCE_START, ...body, CONFIG_REFERENCE_END].join("\n\n");
}

/** Returns `readme` with the text between the markers replaced by the current reference. */
export function withConfigReference(readme: string): string {
  const start = readme.indexOf(CONFIG_REFERENCE_START);
  const end = readme.indexOf(CONFIG_REFERENCE_END);
  if (start < 0 || end < start) {
    throw new Error(`README has no ${CONFIG_REFERENCE_START} … ${CONFIG_REFERENCE_END} block`);
  }
  return (
    readme.slice(0, start) +
    renderConfigReference() +
    readme.slice(end + CONFIG_REFERENCE_END.length)
  );
}
