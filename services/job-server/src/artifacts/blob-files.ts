/**
 * The artifact store's bytes on disk, under `<dataDir>/artifacts`:
 *
 * - `uploads/<random>.partial`: the content of one open upload, written chunk by chunk at the
 *   chunk's offset and fsynced before the upload's committed offset moves past it.
 * - `sha256/<first two hex digits>/<64 hex digits>`: committed content, one read-only file per
 *   SHA-256 digest, whatever number of artifacts share it.
 *
 * A verified partial file becomes a blob by a hard link (atomic: the blob name appears complete or
 * not at all, and an existing blob of the same digest is simply kept), so the partial stays in
 * place until the metadata commit has succeeded and a retried commit can run again.
 */
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { chmod, link, mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { ArtifactError } from "./errors.js";

/** A partial upload file that no open upload refers to. */
export interface PartialFileInfo {
  readonly name: string;
  /** Last modification, Unix milliseconds (the file system's clock). */
  readonly mtimeMs: number;
}

/** One chunk read back from a blob. */
export interface BlobChunk {
  readonly offset: number;
  readonly data: Uint8Array;
}

/** The disk layout above; see the module comment. */
export interface BlobFiles {
  /** `<dataDir>/artifacts`. */
  readonly root: string;
  /** Creates the directories (idempotent). */
  init(): Promise<void>;
  /** A fresh, unique partial file name. */
  newPartialName(): string;
  /**
   * Writes `data` at `offset` of partial file `name` (created when missing) and fsyncs it: when
   * this resolves the bytes survive a crash.
   */
  writeChunk(name: string, offset: number, data: Uint8Array): Promise<void>;
  /**
   * Cuts partial file `name` to `size` bytes (a crash may have left bytes past the committed
   * offset) and returns the SHA-256 hex of its content, read as a stream. A file shorter than
   * `size` hashes what it has (and so fails any digest check).
   */
  hashPartial(name: string, size: number): Promise<string>;
  /**
   * Makes partial file `name` (already verified to hash to `hex`) the blob of `hex`: read-only,
   * hard-linked under its digest and the directory entry fsynced. Keeps an existing blob of the
   * same digest (dedupe). The partial file stays; remove it with {@link removePartial}.
   */
  publish(name: string, hex: string): Promise<void>;
  /** Deletes partial file `name`; a missing file is fine. */
  removePartial(name: string): Promise<void>;
  /** Whether the blob of `hex` exists. */
  hasBlob(hex: string): Promise<boolean>;
  /**
   * Reads `length` bytes of the blob of `hex` from `offset`, in chunks of at most `chunkBytes`
   * (fresh buffers, safe to hand on). Stops with `signal`'s reason when it aborts.
   * @throws ArtifactError data_loss when the blob is missing or shorter than expected.
   */
  readRange(
    hex: string,
    offset: number,
    length: number,
    chunkBytes: number,
    signal?: AbortSignal,
  ): AsyncGenerator<BlobChunk>;
  /** Every partial file with its modification time. */
  listPartials(): Promise<PartialFileInfo[]>;
}

const PARTIAL_SUFFIX = ".partial";
const HASH_READ_BYTES = 1024 * 1024;

function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

/** Fsyncs a directory so that entries created or removed in it survive a crash. */
async function syncDirectory(path: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(path, constants.O_RDONLY);
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on a directory; the entry is then as durable as they allow.
    if (!isErrno(error, "EINVAL") && !isErrno(error, "EISDIR") && !isErrno(error, "EPERM")) {
      throw error;
    }
  } finally {
    await handle?.close();
  }
}

/** The {@link BlobFiles} of `<dataDir>/artifacts`. */
export function createBlobFiles(dataDir: string): BlobFiles {
  const root = join(dataDir, "artifacts");
  const uploadsDir = join(root, "uploads");
  const blobsDir = join(root, "sha256");
  const partialPath = (name: string) => join(uploadsDir, name);
  const blobDir = (hex: string) => join(blobsDir, hex.slice(0, 2));
  const blobPath = (hex: string) => join(blobDir(hex), hex);

  return {
    root,
    async init() {
      await mkdir(uploadsDir, { recursive: true });
      await mkdir(blobsDir, { recursive: true });
    },
    newPartialName() {
      return `${randomBytes(16).toString("hex")}${PARTIAL_SUFFIX}`;
    },
    async writeChunk(name, offset, data) {
      const handle = await open(partialPath(name), constants.O_RDWR | constants.O_CREAT, 0o600);
      try {
        let written = 0;
        while (written < data.length) {
          const { bytesWritten } = await handle.write(
            data,
            written,
            data.length - written,
            offset + written,
          );
          written += bytesWritten;
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      // The first chunk created the file: make its directory entry as durable as its bytes.
      if (offset === 0) await syncDirectory(uploadsDir);
    },
    async hashPartial(name, size) {
      const path = partialPath(name);
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(path, constants.O_RDONLY);
      } catch (error) {
        // Nothing was ever written (an empty upload, or a file lost): hash as empty.
        if (isErrno(error, "ENOENT")) return createHash("sha256").digest("hex");
        throw error;
      }
      try {
        if ((await handle.stat()).size > size) {
          await handle.close();
          handle = await open(path, constants.O_RDWR);
          await handle.truncate(size);
          await handle.sync();
        }
        const hash = createHash("sha256");
        const buffer = Buffer.allocUnsafe(Math.min(HASH_READ_BYTES, Math.max(size, 1)));
        let position = 0;
        while (position < size) {
          const { bytesRead } = await handle.read(
            buffer,
            0,
            Math.min(buffer.length, size - position),
            position,
          );
          if (bytesRead === 0) break;
          hash.update(buffer.subarray(0, bytesRead));
          position += bytesRead;
        }
        return hash.digest("hex");
      } finally {
        await handle.close();
      }
    },
    async publish(name, hex) {
      const source = partialPath(name);
      // An upload of zero bytes never wrote its file.
      const created = await open(source, constants.O_RDONLY | constants.O_CREAT, 0o600);
      await created.close();
      await chmod(source, 0o444);
      await mkdir(blobDir(hex), { recursive: true });
      try {
        await link(source, blobPath(hex));
      } catch (error) {
        if (!isErrno(error, "EEXIST")) throw error;
      }
      await syncDirectory(blobDir(hex));
      await syncDirectory(blobsDir);
    },
    async removePartial(name) {
      try {
        await unlink(partialPath(name));
      } catch (error) {
        if (!isErrno(error, "ENOENT")) throw error;
      }
    },
    async hasBlob(hex) {
      try {
        await stat(blobPath(hex));
        return true;
      } catch (error) {
        if (isErrno(error, "ENOENT")) return false;
        throw error;
      }
    },
    async *readRange(hex, offset, length, chunkBytes, signal) {
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(blobPath(hex), constants.O_RDONLY);
      } catch (error) {
        if (isErrno(error, "ENOENT")) {
          throw new ArtifactError(
            "data_loss",
            `the content sha256:${hex} is missing on the server`,
          );
        }
        throw error;
      }
      try {
        let position = offset;
        const end = offset + length;
        while (position < end) {
          signal?.throwIfAborted();
          const data = Buffer.allocUnsafe(Math.min(chunkBytes, end - position));
          let filled = 0;
          while (filled < data.length) {
            const { bytesRead } = await handle.read(
              data,
              filled,
              data.length - filled,
              position + filled,
            );
            if (bytesRead === 0) {
              throw new ArtifactError(
                "data_loss",
                `the content sha256:${hex} on the server is shorter than its recorded size`,
              );
            }
            filled += bytesRead;
          }
          yield { offset: position, data };
          position += data.length;
        }
      } finally {
        await handle.close();
      }
    },
    async listPartials() {
      const names = (await readdir(uploadsDir)).filter((name) => name.endsWith(PARTIAL_SUFFIX));
      const found: PartialFileInfo[] = [];
      for (const name of names) {
        try {
          found.push({ name, mtimeMs: (await stat(partialPath(name))).mtimeMs });
        } catch (error) {
          if (!isErrno(error, "ENOENT")) throw error;
        }
      }
      return found;
    },
  };
}
