import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import {
  createKeyFile,
  KeyFileExistsError,
  openKeyFile,
  readKeyFile,
  writeKeyFile,
} from "./key-file.js";
import { generateKeyPair, type KeyPair } from "./keys.js";

/** Options for {@link loadOrCreateServiceKey}. */
export interface ServiceKeyOptions {
  /** Path of the service's key file, e.g. `$DATA_DIR/key.json`. */
  path: string;
  /** Name recorded in a newly created file (the service's name). */
  name: string;
  /** Password of an encrypted key file; a new file is encrypted with it when given. */
  password?: string;
}

/** What {@link loadOrCreateServiceKey} did. */
export interface ServiceKey {
  keyPair: KeyPair;
  /** Whether the file was created by this call (the service's first start). */
  created: boolean;
}

/**
 * The key a service signs with: read from `path`, or generated and written there (mode 0600,
 * atomically) on the service's first start, the way a blockchain node makes its node key. Two
 * processes starting at once on the same path end up with the same key: the loser of the
 * no-overwrite write reads the winner's file.
 */
export async function loadOrCreateServiceKey(options: ServiceKeyOptions): Promise<ServiceKey> {
  const password = options.password === undefined ? {} : { password: options.password };
  try {
    return {
      keyPair: await openKeyFile(await readKeyFile(options.path), options.password),
      created: false,
    };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(dirname(options.path), { recursive: true });
  const keyPair = generateKeyPair();
  try {
    await writeKeyFile(options.path, await createKeyFile(options.name, keyPair, password));
    return { keyPair, created: true };
  } catch (error) {
    if (!(error instanceof KeyFileExistsError)) throw error;
    return {
      keyPair: await openKeyFile(await readKeyFile(options.path), options.password),
      created: false,
    };
  }
}
