/**
 * The environment files of the Docker Compose network (`docker-compose.yml`), made from the same
 * network table as `pnpm start` ({@link SERVICES}), so the two never disagree about who calls
 * whom. Compose cannot know a service's address before its key exists, and every paid path needs
 * its peers' addresses (who may read the wallet, which registry validators trust, whom a node's
 * calls are signed for), so `pnpm compose:init` makes each process's key first, in the folder
 * Compose mounts as that process's DATA_DIR, and writes `<name>.env` beside it with the peers'
 * URLs (Compose's service names), their addresses, and the process's own settings. The model
 * catalog and its files are mounted read-only at {@link COMPOSE_MODELS_DIR} in every container.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { addressVariables } from "./service-keys.js";
import {
  DEFAULT_PORT_BASE,
  DEVNET_MODEL_DIRS,
  DEVNET_MODELS_FILE,
  peerUrlVariable,
  SERVICES,
  type ServiceDefinition,
  serviceKeyFile,
} from "./services.js";

/** Where docker-compose.yml mounts `examples/models` in every container. */
export const COMPOSE_MODELS_DIR = "/models";

/** The URL other containers reach `service` at: its Compose service name and fixed port. */
export function composeUrl(service: ServiceDefinition): string {
  return `http://${service.name}:${DEFAULT_PORT_BASE + service.portOffset}`;
}

/** Devnet paths (relative to a service's folder in the repository) as the containers see them. */
function containerValue(value: string): string {
  if (value === DEVNET_MODELS_FILE) return `${COMPOSE_MODELS_DIR}/catalog.json`;
  if (value === DEVNET_MODEL_DIRS) return COMPOSE_MODELS_DIR;
  return value;
}

/**
 * The variables of one container, besides the ones docker-compose.yml sets for every service
 * (HOST, DATA_DIR, logging, limits): its port, its peers' URLs, its peers' addresses (making
 * their keys under `keysDir` when missing), its own URL where it advertises one, and its fixed
 * settings.
 */
export async function composeEnvironment(
  service: ServiceDefinition,
  keysDir: string,
  services: readonly ServiceDefinition[] = SERVICES,
): Promise<Record<string, string>> {
  const env: Record<string, string> = {
    PORT: String(DEFAULT_PORT_BASE + service.portOffset),
  };
  for (const peerName of [...service.peers, ...(service.laterPeers ?? [])]) {
    const peer = services.find((s) => s.name === peerName);
    if (peer === undefined) throw new Error(`${service.name}: unknown peer ${peerName}`);
    env[peerUrlVariable(peerName)] = composeUrl(peer);
  }
  Object.assign(env, await addressVariables(service, services, keysDir));
  if (service.ownUrlVariable !== undefined) env[service.ownUrlVariable] = composeUrl(service);
  for (const [name, value] of Object.entries(service.env)) env[name] = containerValue(value);
  return env;
}

/** `NAME=value` lines; values are addresses, URLs, paths and numbers, so no quoting is needed. */
export function envFileText(env: Readonly<Record<string, string>>): string {
  return `${Object.entries(env)
    .map(([name, value]) => {
      if (/[\s"'#$\\]/.test(value)) throw new Error(`${name}: value needs quoting: ${value}`);
      return `${name}=${value}`;
    })
    .join("\n")}\n`;
}

/**
 * Makes every process's key in `<keysDir>/<name>/key.json` (kept when it exists) and writes
 * `<keysDir>/<name>.env`; returns the files written.
 */
export async function writeComposeEnvironment(
  keysDir: string,
  services: readonly ServiceDefinition[] = SERVICES,
): Promise<string[]> {
  const written: string[] = [];
  for (const service of services) {
    await mkdir(join(keysDir, service.name), { recursive: true });
    // Its own key too, so every key exists (and can be handed to the containers' user) up front.
    await loadOrCreateServiceKey({ path: serviceKeyFile(service, keysDir), name: service.name });
    const file = join(keysDir, `${service.name}.env`);
    const header = `# ${service.name}: written by \`pnpm compose:init\` from packages/devnet/src/services.ts; do not edit.\n`;
    await writeFile(
      file,
      header + envFileText(await composeEnvironment(service, keysDir, services)),
    );
    written.push(file);
  }
  return written;
}
