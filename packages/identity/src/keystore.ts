/**
 * A keystore: a directory of key files, `<home>/keys/<name>.json`, where `<home>` is
 * `TESSERA_HOME` or `~/.tessera`. Directories are created with mode 0700, files with 0600.
 */
import { mkdir, readdir } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import {
  createKeyFile,
  InvalidKeyFileError,
  type KeyFile,
  KeyFileExistsError,
  openKeyFile,
  readKeyFile,
  type ScryptCost,
  writeKeyFile,
} from "./key-file.js";
import { generateKeyPair, type KeyPair } from "./keys.js";

/** Valid key names: 1 to 64 of lowercase letters, digits, `_` and `-`. */
export const KEY_NAME_PATTERN = /^[a-z0-9_-]{1,64}$/;

/** The name is not a valid key name. */
export class InvalidKeyNameError extends Error {
  constructor(name: string) {
    super(
      `invalid key name ${JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}...` : name)}: use 1 to 64 of a-z, 0-9, "_" and "-"`,
    );
    this.name = "InvalidKeyNameError";
  }
}

/** A key with this name already exists. */
export class DuplicateKeyNameError extends Error {
  constructor(name: string) {
    super(`a key named "${name}" already exists`);
    this.name = "DuplicateKeyNameError";
  }
}

/** No key has this name. */
export class KeyNotFoundError extends Error {
  constructor(name: string) {
    super(`no key named "${name}"`);
    this.name = "KeyNotFoundError";
  }
}

/**
 * The Tessera home directory: `TESSERA_HOME` from `env` when set and non-empty (resolved against
 * the working directory when relative), otherwise `~/.tessera`.
 */
export function resolveTesseraHome(env: Readonly<Record<string, string | undefined>>): string {
  const fromEnv = env.TESSERA_HOME;
  if (fromEnv !== undefined && fromEnv.length > 0) {
    return isAbsolute(fromEnv) ? fromEnv : resolve(fromEnv);
  }
  return join(homedir(), ".tessera");
}

/** Options of {@link createKeystore}. */
export interface KeystoreOptions {
  /** The Tessera home directory (see {@link resolveTesseraHome}); keys live in `<homeDir>/keys`. */
  readonly homeDir: string;
  /** scrypt cost for new encrypted keys; default the key file's default. Lower it only in tests. */
  readonly scryptCost?: ScryptCost | undefined;
}

/** What a keystore knows about one key without its password. */
export interface KeyEntry {
  readonly name: string;
  readonly address: string;
  /** Whether the secret is encrypted with a password. */
  readonly encrypted: boolean;
  /** ISO 8601. */
  readonly createdAt: string;
  /** The key file's path. */
  readonly path: string;
}

/**
 * One row of {@link Keystore.list}: a readable key, or a file that is not a valid key file
 * (`problem` names the file and what is wrong).
 */
export type KeyListing =
  | ({ readonly ok: true } & KeyEntry)
  | { readonly ok: false; readonly name: string; readonly path: string; readonly problem: string };

/** Options of {@link Keystore.create}. */
export interface CreateKeyOptions {
  /** Encrypts the key with this password (non-empty); without one the key is stored plain. */
  readonly password?: string | undefined;
}

/** A directory of named key files. */
export interface Keystore {
  /** `<homeDir>/keys`. */
  readonly keysDir: string;
  /**
   * Generates a key pair and stores it under `name`.
   * @throws InvalidKeyNameError, DuplicateKeyNameError.
   */
  create(name: string, options?: CreateKeyOptions): Promise<{ entry: KeyEntry; keyPair: KeyPair }>;
  /** Every key file, sorted by name; files that do not parse are listed with their problem. */
  list(): Promise<KeyListing[]>;
  /**
   * The key's address and metadata, without its password.
   * @throws InvalidKeyNameError, KeyNotFoundError, InvalidKeyFileError.
   */
  describe(name: string): Promise<KeyEntry>;
  /**
   * The key pair stored under `name`, decrypted with `password` when it is encrypted.
   * @throws InvalidKeyNameError, KeyNotFoundError, InvalidKeyFileError, PasswordRequiredError,
   * WrongPasswordError.
   */
  load(name: string, password?: string): Promise<KeyPair>;
}

/** A keystore over `<options.homeDir>/keys`. Nothing touches the disk until a method is called. */
export function createKeystore(options: KeystoreOptions): Keystore {
  const keysDir = join(options.homeDir, "keys");
  const pathOf = (name: string): string => {
    if (typeof name !== "string" || !KEY_NAME_PATTERN.test(name)) {
      throw new InvalidKeyNameError(String(name));
    }
    return join(keysDir, `${name}.json`);
  };

  const read = async (name: string): Promise<{ file: KeyFile; path: string }> => {
    const path = pathOf(name);
    let file: KeyFile;
    try {
      file = await readKeyFile(path);
    } catch (error) {
      if (errorCode(error) === "ENOENT") throw new KeyNotFoundError(name);
      throw error;
    }
    if (file.name !== name) {
      throw new InvalidKeyFileError(`${path}: names itself "${file.name}"`);
    }
    return { file, path };
  };

  return {
    keysDir,

    async create(name, createOptions = {}) {
      const path = pathOf(name);
      await mkdir(options.homeDir, { recursive: true, mode: 0o700 });
      await mkdir(keysDir, { recursive: true, mode: 0o700 });
      const keyPair = generateKeyPair();
      const file = await createKeyFile(name, keyPair, {
        password: createOptions.password,
        scryptCost: options.scryptCost,
      });
      try {
        await writeKeyFile(path, file);
      } catch (error) {
        if (error instanceof KeyFileExistsError) throw new DuplicateKeyNameError(name);
        throw error;
      }
      return { entry: entryOf(file, path), keyPair };
    },

    async list() {
      let names: string[];
      try {
        names = await readdir(keysDir);
      } catch (error) {
        if (errorCode(error) === "ENOENT") return [];
        throw error;
      }
      const keyNames = names
        .filter((file) => file.endsWith(".json"))
        .map((file) => file.slice(0, -".json".length))
        .filter((name) => KEY_NAME_PATTERN.test(name))
        .sort();
      const listings: KeyListing[] = [];
      for (const name of keyNames) {
        const path = join(keysDir, `${name}.json`);
        try {
          const file = await readKeyFile(path);
          if (file.name !== name) {
            listings.push({
              ok: false,
              name,
              path,
              problem: `${path}: names itself "${file.name}"`,
            });
          } else {
            listings.push({ ok: true, ...entryOf(file, path) });
          }
        } catch (error) {
          listings.push({ ok: false, name, path, problem: (error as Error).message });
        }
      }
      return listings;
    },

    async describe(name) {
      const { file, path } = await read(name);
      return entryOf(file, path);
    },

    async load(name, password) {
      const { file } = await read(name);
      return openKeyFile(file, password);
    },
  };
}

function entryOf(file: KeyFile, path: string): KeyEntry {
  return {
    name: file.name,
    address: file.address,
    encrypted: file.secret.kind === "encrypted",
    createdAt: file.createdAt,
    path,
  };
}

function errorCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error
    ? String((error as { code: unknown }).code)
    : undefined;
}
