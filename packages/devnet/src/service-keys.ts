import { loadOrCreateServiceKey } from "@tessera/identity/service-key";
import { type ServiceDefinition, type ServiceName, serviceKeyFile } from "./services.js";

/**
 * The variables of `service` that carry other processes' addresses (see
 * {@link ServiceDefinition.addressOf}). A referenced process's key is made in its DATA_DIR now
 * if it has none yet, exactly where that process will load it from when it starts.
 */
export async function addressVariables(
  service: ServiceDefinition,
  services: readonly ServiceDefinition[],
  dataDir: string,
): Promise<Record<string, string>> {
  const addressOfProcess = async (owner: ServiceName): Promise<string> => {
    const definition = services.find((s) => s.name === owner);
    if (definition === undefined) throw new Error(`${service.name}: unknown process ${owner}`);
    const { keyPair } = await loadOrCreateServiceKey({
      path: serviceKeyFile(definition, dataDir),
      name: definition.name,
    });
    return keyPair.address;
  };
  const env: Record<string, string> = {};
  for (const [variable, source] of Object.entries(service.addressOf ?? {})) {
    if (typeof source === "string") {
      env[variable] = await addressOfProcess(source);
      continue;
    }
    const items: string[] = [];
    for (const owner of source.each)
      items.push(`${await addressOfProcess(owner)}${source.suffix ?? ""}`);
    env[variable] = items.join(",");
  }
  return env;
}
