/**
 * Key files: one key pair as a JSON document, optionally encrypted with a password.
 *
 * ```json
 * { "version": 1, "name": "alice", "address": "tsr1...", "publicKey": "<hex>",
 *   "createdAt": "2025-01-01T00:00:00.000Z",
 *   "secret": { "kind": "encrypted", "kdf": "scrypt", "kdfParams": { "N": 131072, "r": 8, "p": 1,
 *               "salt": "<hex>" }, "cipher": "aes-256-gcm", "nonce": "<hex>", "ciphertext": "<hex>" } }
 * ```
 * or `"secret": { "kind": "plain", "secretKey": "<hex>" }` for a key without a password.
 *
 * Encryption is scrypt + AES-256-GCM, both from node:crypto rather than @noble/hashes +
 * @noble/ciphers: they are OpenSSL's native code (scrypt at N=2^17 took 307 ms here against
 * 487 ms for @noble/hashes), and they add no dependency. GCM's 96-bit random nonce is safe
 * because each file gets a fresh salt and so a fresh key: a key encrypts exactly one message. The ciphertext is the encrypted 32-byte secret
 * followed by the 16-byte GCM tag; the additional data binds the version and the address, so
 * moving a secret under another file's address fails like a wrong password does.
 *
 * Files are written with mode 0600, atomically (temp file, fsync, then link or rename), and a
 * new file never replaces an existing one unless asked to.
 */
import {
  createCipheriv,
  createDecipheriv,
  randomBytes,
  scrypt as scryptCallback,
} from "node:crypto";
import { access, link, open, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { addressFromPublicKey, PUBLIC_KEY_BYTES } from "./address.js";
import { bytesEqual, fromHex, toHex } from "./hash.js";
import { KeyPair, SECRET_KEY_BYTES } from "./keys.js";

/** The key-file format version this code writes and reads. */
export const KEY_FILE_VERSION = 1;

/** scrypt cost parameters (RFC 7914). */
export interface ScryptCost {
  /** CPU/memory cost, a power of two. */
  readonly N: number;
  /** Block size. */
  readonly r: number;
  /** Parallelism. */
  readonly p: number;
}

/** Default scrypt cost: N=2^17, r=8, p=1 (OWASP's recommendation; 128 MiB, about 0.3 s). */
export const DEFAULT_SCRYPT_COST: ScryptCost = Object.freeze({ N: 2 ** 17, r: 8, p: 1 });

/** Largest scrypt cost a key file may ask for when read (bounds the memory a file can demand). */
const MAX_SCRYPT_MEMORY_BYTES = 512 * 1024 * 1024;
const SALT_BYTES = 16;
const GCM_NONCE_BYTES = 12;
const GCM_TAG_BYTES = 16;
const MAX_KEY_FILE_BYTES = 64 * 1024;

/** An unencrypted secret key. */
export interface PlainSecret {
  readonly kind: "plain";
  /** The 32-byte ed25519 secret key, hex. */
  readonly secretKey: string;
}

/** A secret key encrypted with a password. */
export interface EncryptedSecret {
  readonly kind: "encrypted";
  readonly kdf: "scrypt";
  readonly kdfParams: ScryptCost & {
    /** Random salt, hex. */
    readonly salt: string;
  };
  readonly cipher: "aes-256-gcm";
  /** The 12-byte GCM nonce, hex. */
  readonly nonce: string;
  /** Encrypted 32-byte secret key followed by the 16-byte GCM tag, hex. */
  readonly ciphertext: string;
}

/** A key file's JSON document. */
export interface KeyFile {
  readonly version: typeof KEY_FILE_VERSION;
  /** The key's name in its keystore. */
  readonly name: string;
  /** The address of `publicKey`. */
  readonly address: string;
  /** The 32-byte ed25519 public key, hex. */
  readonly publicKey: string;
  /** When the key was created, ISO 8601. */
  readonly createdAt: string;
  readonly secret: PlainSecret | EncryptedSecret;
}

/** Options of {@link createKeyFile}. */
export interface KeyFileOptions {
  /** Encrypts the secret with this password when given (non-empty); otherwise stores it plain. */
  readonly password?: string | undefined;
  /** scrypt cost; default {@link DEFAULT_SCRYPT_COST}. Lower it only in tests. */
  readonly scryptCost?: ScryptCost | undefined;
  /** Creation time; default now. */
  readonly createdAt?: Date | undefined;
}

/** The key file is malformed, inconsistent, or unreadable as JSON. */
export class InvalidKeyFileError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InvalidKeyFileError";
  }
}

/** The password does not open the key file (GCM tag mismatch). */
export class WrongPasswordError extends Error {
  constructor(keyName: string) {
    super(`wrong password for key "${keyName}" (or its key file was modified)`);
    this.name = "WrongPasswordError";
  }
}

/** The key file is encrypted and no password was given. */
export class PasswordRequiredError extends Error {
  constructor(keyName: string) {
    super(`key "${keyName}" is encrypted: a password is required`);
    this.name = "PasswordRequiredError";
  }
}

/** {@link writeKeyFile} found a file at the path and was not asked to overwrite it. */
export class KeyFileExistsError extends Error {
  readonly path: string;
  constructor(path: string) {
    super(`a key file already exists at ${path}`);
    this.name = "KeyFileExistsError";
    this.path = path;
  }
}

/** Builds the key file of `keyPair`, encrypting its secret when a password is given. */
export async function createKeyFile(
  name: string,
  keyPair: KeyPair,
  options: KeyFileOptions = {},
): Promise<KeyFile> {
  const { password } = options;
  const header = {
    version: KEY_FILE_VERSION,
    name,
    address: keyPair.address,
    publicKey: toHex(keyPair.publicKey),
    createdAt: (options.createdAt ?? new Date()).toISOString(),
  } as const;
  const secretKey = keyPair.exportSecretKey();
  try {
    if (password === undefined) {
      return { ...header, secret: { kind: "plain", secretKey: toHex(secretKey) } };
    }
    if (typeof password !== "string" || password.length === 0) {
      throw new TypeError("the password is empty: omit it to store the key unencrypted");
    }
    const cost = options.scryptCost ?? DEFAULT_SCRYPT_COST;
    checkScryptCost(cost);
    const salt = randomBytes(SALT_BYTES);
    const nonce = randomBytes(GCM_NONCE_BYTES);
    const key = await deriveKey(password, salt, cost);
    try {
      const cipher = createCipheriv("aes-256-gcm", key, nonce);
      cipher.setAAD(additionalData(keyPair.address));
      const ciphertext = Buffer.concat([
        cipher.update(secretKey),
        cipher.final(),
        cipher.getAuthTag(),
      ]);
      return {
        ...header,
        secret: {
          kind: "encrypted",
          kdf: "scrypt",
          kdfParams: { N: cost.N, r: cost.r, p: cost.p, salt: toHex(salt) },
          cipher: "aes-256-gcm",
          nonce: toHex(nonce),
          ciphertext: toHex(ciphertext),
        },
      };
    } finally {
      key.fill(0);
    }
  } finally {
    secretKey.fill(0);
  }
}

/**
 * Checks that `json` is a well-formed key file of this version whose address derives from its
 * public key, and returns it typed. Does not need the password.
 * @param source names the file in error messages.
 * @throws InvalidKeyFileError naming the first problem.
 */
export function parseKeyFile(json: unknown, source = "key file"): KeyFile {
  const bad = (problem: string): never => {
    throw new InvalidKeyFileError(`${source}: ${problem}`);
  };
  if (!isRecord(json)) return bad("not a JSON object");
  if (json.version !== KEY_FILE_VERSION) {
    return bad(
      `unsupported version ${JSON.stringify(json.version)} (this build reads ${KEY_FILE_VERSION})`,
    );
  }
  const name = stringField(json, "name", bad);
  const address = stringField(json, "address", bad);
  const publicKeyHex = stringField(json, "publicKey", bad);
  const createdAt = stringField(json, "createdAt", bad);
  const publicKey = hexField(publicKeyHex, PUBLIC_KEY_BYTES, "publicKey", bad);
  if (addressFromPublicKey(publicKey) !== address) {
    return bad("address does not derive from publicKey");
  }
  if (!isRecord(json.secret)) return bad("missing secret");
  const secret = json.secret;
  let parsedSecret: PlainSecret | EncryptedSecret;
  if (secret.kind === "plain") {
    const secretKey = stringField(secret, "secretKey", bad);
    hexField(secretKey, SECRET_KEY_BYTES, "secret.secretKey", bad);
    parsedSecret = { kind: "plain", secretKey };
  } else if (secret.kind === "encrypted") {
    if (secret.kdf !== "scrypt") return bad(`unsupported kdf ${JSON.stringify(secret.kdf)}`);
    if (secret.cipher !== "aes-256-gcm") {
      return bad(`unsupported cipher ${JSON.stringify(secret.cipher)}`);
    }
    if (!isRecord(secret.kdfParams)) return bad("missing secret.kdfParams");
    const { N, r, p } = secret.kdfParams;
    if (typeof N !== "number" || typeof r !== "number" || typeof p !== "number") {
      return bad("secret.kdfParams N, r and p must be numbers");
    }
    try {
      checkScryptCost({ N, r, p });
    } catch (error) {
      return bad(`secret.kdfParams: ${(error as Error).message}`);
    }
    const salt = stringField(secret.kdfParams, "salt", bad);
    if (hexField(salt, undefined, "secret.kdfParams.salt", bad).length < SALT_BYTES) {
      return bad(`secret.kdfParams.salt is shorter than ${SALT_BYTES} bytes`);
    }
    const nonce = stringField(secret, "nonce", bad);
    hexField(nonce, GCM_NONCE_BYTES, "secret.nonce", bad);
    const ciphertext = stringField(secret, "ciphertext", bad);
    hexField(ciphertext, SECRET_KEY_BYTES + GCM_TAG_BYTES, "secret.ciphertext", bad);
    parsedSecret = {
      kind: "encrypted",
      kdf: "scrypt",
      kdfParams: { N, r, p, salt },
      cipher: "aes-256-gcm",
      nonce,
      ciphertext,
    };
  } else {
    return bad(`unknown secret kind ${JSON.stringify(secret.kind)}`);
  }
  return {
    version: KEY_FILE_VERSION,
    name,
    address,
    publicKey: publicKeyHex,
    createdAt,
    secret: parsedSecret,
  };
}

/**
 * The key pair stored in `file`, decrypting it with `password` when the file is encrypted (a
 * password given for a plain file is ignored).
 * @throws PasswordRequiredError when the file is encrypted and no password was given.
 * @throws WrongPasswordError when the password does not decrypt it.
 * @throws InvalidKeyFileError when the secret does not match the file's public key.
 */
export async function openKeyFile(file: KeyFile, password?: string): Promise<KeyPair> {
  const checked = parseKeyFile(file, `key file "${file.name}"`);
  let secretKey: Uint8Array;
  if (checked.secret.kind === "plain") {
    secretKey = fromHex(checked.secret.secretKey, SECRET_KEY_BYTES);
  } else {
    if (password === undefined || password.length === 0) {
      throw new PasswordRequiredError(checked.name);
    }
    const { kdfParams, nonce, ciphertext } = checked.secret;
    const sealed = fromHex(ciphertext);
    const key = await deriveKey(password, fromHex(kdfParams.salt), kdfParams);
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, fromHex(nonce));
      decipher.setAAD(additionalData(checked.address));
      decipher.setAuthTag(sealed.subarray(SECRET_KEY_BYTES));
      const first = decipher.update(sealed.subarray(0, SECRET_KEY_BYTES));
      try {
        decipher.final();
      } catch {
        first.fill(0);
        throw new WrongPasswordError(checked.name);
      }
      secretKey = new Uint8Array(first);
      first.fill(0);
    } finally {
      key.fill(0);
    }
  }
  try {
    const keyPair = KeyPair.fromSecretKey(secretKey);
    if (!bytesEqual(keyPair.publicKey, fromHex(checked.publicKey))) {
      throw new InvalidKeyFileError(
        `key file "${checked.name}": the secret key does not match its public key`,
      );
    }
    return keyPair;
  } finally {
    secretKey.fill(0);
  }
}

/** Options of {@link writeKeyFile}. */
export interface WriteKeyFileOptions {
  /** Replace an existing file at the path; default false (then {@link KeyFileExistsError}). */
  readonly overwrite?: boolean | undefined;
}

/**
 * Writes `file` to `path` with mode 0600, atomically: readers see either no file or the whole
 * file. The directory must exist.
 * @throws KeyFileExistsError when a file exists at `path` and `overwrite` is not set.
 */
export async function writeKeyFile(
  path: string,
  file: KeyFile,
  options: WriteKeyFileOptions = {},
): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temp, "wx", 0o600);
  try {
    try {
      // The mode passed to open is masked by the umask; set it explicitly.
      await handle.chmod(0o600);
      await handle.writeFile(`${JSON.stringify(file, null, 2)}\n`, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.overwrite) {
      await rename(temp, path);
    } else {
      // link() fails with EEXIST instead of replacing, so two writers cannot both win.
      try {
        await link(temp, path);
      } catch (error) {
        const code = errorCode(error);
        if (code === "EEXIST") throw new KeyFileExistsError(path);
        if (code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw error;
        // A filesystem without hard links: check, then rename (a narrow race remains).
        if (await exists(path)) throw new KeyFileExistsError(path);
        await rename(temp, path);
      }
    }
  } finally {
    await rm(temp, { force: true });
  }
  await syncDirectory(dir);
}

/**
 * Reads and checks the key file at `path` (see {@link parseKeyFile}). Does not need the password.
 * @throws InvalidKeyFileError when it is not a valid key file; the fs error (ENOENT...) when
 * it cannot be read.
 */
export async function readKeyFile(path: string): Promise<KeyFile> {
  const handle = await open(path, "r");
  let text: string;
  try {
    const { size } = await handle.stat();
    if (size > MAX_KEY_FILE_BYTES) {
      throw new InvalidKeyFileError(`${path}: larger than ${MAX_KEY_FILE_BYTES} bytes`);
    }
    text = await readFile(handle, "utf8");
  } finally {
    await handle.close();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidKeyFileError(`${path}: not valid JSON`, { cause: error });
  }
  return parseKeyFile(json, path);
}

function additionalData(address: string): Buffer {
  return Buffer.from(`tessera-key-file/v${KEY_FILE_VERSION}/${address}`, "utf8");
}

function checkScryptCost({ N, r, p }: ScryptCost): void {
  if (!Number.isSafeInteger(N) || N < 2 || (N & (N - 1)) !== 0) {
    throw new RangeError(`scrypt N must be a power of two, got ${N}`);
  }
  if (!Number.isSafeInteger(r) || r < 1 || r > 64) {
    throw new RangeError(`scrypt r must be in 1..64, got ${r}`);
  }
  if (!Number.isSafeInteger(p) || p < 1 || p > 16) {
    throw new RangeError(`scrypt p must be in 1..16, got ${p}`);
  }
  if (128 * N * r > MAX_SCRYPT_MEMORY_BYTES) {
    throw new RangeError(`scrypt N=${N}, r=${r} needs more than ${MAX_SCRYPT_MEMORY_BYTES} bytes`);
  }
}

/** Derives the 32-byte AES key; the password is NFKC-normalized so it types the same everywhere. */
function deriveKey(password: string, salt: Uint8Array, cost: ScryptCost): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(
      Buffer.from(password.normalize("NFKC"), "utf8"),
      salt,
      32,
      { N: cost.N, r: cost.r, p: cost.p, maxmem: 128 * cost.N * cost.r * 2 + 1024 * 1024 },
      (error, key) => (error ? reject(error) : resolve(key)),
    );
  });
}

async function syncDirectory(dir: string): Promise<void> {
  // Makes the new directory entry durable; not every platform lets a directory be fsynced.
  try {
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Best effort.
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringField(
  obj: Record<string, unknown>,
  field: string,
  bad: (p: string) => never,
): string {
  const value = obj[field];
  if (typeof value !== "string" || value.length === 0) return bad(`missing or empty "${field}"`);
  return value;
}

function hexField(
  value: string,
  bytes: number | undefined,
  field: string,
  bad: (p: string) => never,
): Uint8Array {
  try {
    return fromHex(value, bytes);
  } catch (error) {
    return bad(`${field}: ${(error as Error).message}`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function errorCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error
    ? String((error as { code: unknown }).code)
    : undefined;
}
