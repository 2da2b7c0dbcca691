import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { type ServiceDefinition, serviceKeyFile } from "./services.js";

/**
 * The variables of `service` that carry other processes' addresses (see
 * {@link ServiceDefinition.addressOf}). The referenced process's key is made in its DATA_DIR now
 * if it has none yet, exactly where that process will load it from when it starts.
 */
export async function addressVariables(
  service: ServiceDefinition,
  services: readonly ServiceDefinition[],
  dataDir: string,
): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const [variable, owner] of Object.entries(service.addressOf ?? {})) {
    const definition = services.find((s) => s.name === owner);
    if (definition === undefined) throw new Error(`${service.name}: unknown process ${owner}`);
    const { keyPair } = await loadOrCreateServiceKey({
      path: serviceKeyFile(definition, dataDir),
      name: definition.name,
    });
    env[variable] = keyPair.address;
  }
  return env;
}
