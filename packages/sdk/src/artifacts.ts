/**
 * Chunked, checksummed, resumable artifact transfer with the job server's ArtifactService
 * (tessera/job/v1/artifact_service.proto).
 *
 * Upload: hash the content first (streaming a file, never holding it in memory), BeginUpload (which
 * answers where a broken upload stopped, or an identical artifact the caller already has), stream
 * chunks of the server's `max_chunk_bytes` from there, each with its SHA-256, then CommitUpload.
 * Download: stream chunks into `<dest>.partial` from where an earlier download stopped, check each
 * chunk's SHA-256 and the whole content's digest, then rename into place.
 *
 * Streams are bounded by the server's deadline (30 s by default, 300 s at most): each transfer
 * asks for {@link DEFAULT_TRANSFER_TIMEOUT_MS} per stream and, when a stream ends early
 * (deadline, server restart, network), opens the next one where the last stopped, as long as the
 * previous attempt moved forward.
 */
import { createHash, type Hash } from "node:crypto";
import { constants, createReadStream } from "node:fs";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import type {
  Artifact,
  ArtifactService,
  UploadChunksRequestSchema,
} from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { SDK_PROTOCOL_VERSION } from "./protocol-version.js";

/** Per-stream deadline the transfers ask for, in milliseconds (the server may shorten it). */
export const DEFAULT_TRANSFER_TIMEOUT_MS = 120_000;
/** Chunk size when a server does not say (the proto fixes 1 MiB). */
const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Consecutive attempts without progress before a transfer gives up. */
const MAX_STALLED_ATTEMPTS = 3;
const FILE_READ_BYTES = 1024 * 1024;

/** What to upload: a file (streamed from disk) or bytes already in memory. */
export type ArtifactSource = { readonly path: string } | { readonly bytes: Uint8Array };

/** The artifact's metadata. */
export interface ArtifactUploadMeta {
  /** Artifact name, 1-256 bytes without "/", e.g. "model", "train.csv". */
  readonly name: string;
  /** IANA media type, e.g. "text/csv", "application/onnx". */
  readonly mediaType: string;
  /** The job it belongs to; required for a node's result upload. */
  readonly jobId?: string | undefined;
  /** The lease of a node's result upload. */
  readonly leaseId?: string | undefined;
  /**
   * The upload's id, unique per caller (1-128 of [A-Za-z0-9._:-]); pass the same id to resume
   * after a crash. Default: derived from the content's digest and this metadata, so uploading the
   * same thing again resumes (or answers the artifact already committed).
   */
  readonly uploadId?: string | undefined;
}

/** The combined form of {@link uploadArtifact}'s source and metadata. */
export type ArtifactUpload = ArtifactSource & ArtifactUploadMeta;

/** Options of {@link uploadArtifact}. */
export interface UploadArtifactOptions {
  /** Stops the upload; what was stored stays, and the same upload id resumes it later. */
  readonly signal?: AbortSignal | undefined;
  /** Called as chunks leave: bytes stored or sent so far (from the resume point), and the total. */
  readonly onProgress?: ((sent: number, total: number) => void) | undefined;
  /** Deadline of each stream and call; default {@link DEFAULT_TRANSFER_TIMEOUT_MS}. */
  readonly timeoutMs?: number | undefined;
}

/** Options of {@link downloadArtifact}. */
export interface DownloadArtifactOptions {
  /** Stops the download; `<dest>.partial` stays, and the next download resumes it. */
  readonly signal?: AbortSignal | undefined;
  /** Called after each chunk is written: bytes on disk so far, and the total. */
  readonly onProgress?: ((received: number, total: number) => void) | undefined;
  /** Deadline of each stream and call; default {@link DEFAULT_TRANSFER_TIMEOUT_MS}. */
  readonly timeoutMs?: number | undefined;
}

/** Throws Connect's canceled error (as an aborted call does) when `signal` has aborted. */
function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new ConnectError(
      "the transfer was aborted",
      Code.Canceled,
      undefined,
      undefined,
      signal.reason,
    );
  }
}

/** Whether a failed stream may simply be reopened where it stopped. */
function isTransient(error: unknown): boolean {
  const code = ConnectError.from(error).code;
  return code === Code.DeadlineExceeded || code === Code.Unavailable || code === Code.Aborted;
}

function callOptions(options: {
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
}) {
  const call: CallOptions = { timeoutMs: options.timeoutMs ?? DEFAULT_TRANSFER_TIMEOUT_MS };
  if (options.signal !== undefined) call.signal = options.signal;
  return call;
}

function sha256(data: Uint8Array): Uint8Array {
  const digest = createHash("sha256").update(data).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const view = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return a.length === b.length && view(a).equals(view(b));
}

/** Size and "sha256:<hex>" of a file, read as a stream. */
async function hashFile(
  path: string,
  signal: AbortSignal | undefined,
): Promise<{ size: number; digest: string }> {
  const hash = createHash("sha256");
  let size = 0;
  const stream = createReadStream(path, {
    highWaterMark: FILE_READ_BYTES,
    ...(signal === undefined ? {} : { signal }),
  });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { size, digest: `sha256:${hash.digest("hex")}` };
}

/** Bytes `[offset, offset + length)` of the source; a file that shrank since hashing fails. */
async function readSource(
  source: ArtifactSource,
  file: FileHandle | undefined,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  if ("bytes" in source) return source.bytes.subarray(offset, offset + length);
  if (file === undefined) throw new Error("file source without an open file");
  const data = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await file.read(data, filled, length - filled, offset + filled);
    if (bytesRead === 0) {
      throw new ConnectError(
        `${source.path} changed while uploading: it ended at byte ${offset + filled}`,
        Code.FailedPrecondition,
      );
    }
    filled += bytesRead;
  }
  return data;
}

/** The default upload id: the same content and metadata give the same id. */
function defaultUploadId(digest: string, size: number, meta: ArtifactUploadMeta): string {
  const key = JSON.stringify([
    digest,
    size,
    meta.name,
    meta.mediaType,
    meta.jobId ?? "",
    meta.leaseId ?? "",
  ]);
  return `sdk-${createHash("sha256").update(key).digest("hex").slice(0, 48)}`;
}

function splitUpload(upload: ArtifactUpload): [ArtifactSource, ArtifactUploadMeta] {
  const source: ArtifactSource =
    "bytes" in upload ? { bytes: upload.bytes } : { path: upload.path };
  return [source, upload];
}

/**
 * Uploads `source` as an artifact named by `meta` and returns the committed Artifact (its
 * `content.uri` is "artifact://<artifact_id>"). A file is hashed first, then read chunk by chunk:
 * memory stays at about one chunk whatever the size. Resumes from the server's committed offset
 * (after an abort, a crash with the same upload id, or a stream cut by a deadline), and returns
 * the caller's existing artifact without uploading when the server already has it.
 *
 * Also accepts the combined form `uploadArtifact(client, { path | bytes, name, mediaType, … }, opts)`.
 *
 * @throws ConnectError from the server (e.g. failed_precondition when the content no longer
 * matches its digest, which discards the upload; already_exists when `uploadId` was used for other
 * metadata), canceled when `signal` aborts.
 */
export function uploadArtifact(
  client: Client<typeof ArtifactService>,
  source: ArtifactSource,
  meta: ArtifactUploadMeta,
  opts?: UploadArtifactOptions,
): Promise<Artifact>;
export function uploadArtifact(
  client: Client<typeof ArtifactService>,
  upload: ArtifactUpload,
  opts?: UploadArtifactOptions,
): Promise<Artifact>;
export function uploadArtifact(
  client: Client<typeof ArtifactService>,
  sourceOrUpload: ArtifactSource | ArtifactUpload,
  metaOrOpts?: ArtifactUploadMeta | UploadArtifactOptions,
  maybeOpts?: UploadArtifactOptions,
): Promise<Artifact> {
  if ("name" in sourceOrUpload) {
    const [source, meta] = splitUpload(sourceOrUpload);
    return upload(client, source, meta, (metaOrOpts as UploadArtifactOptions | undefined) ?? {});
  }
  return upload(client, sourceOrUpload, metaOrOpts as ArtifactUploadMeta, maybeOpts ?? {});
}

async function upload(
  client: Client<typeof ArtifactService>,
  source: ArtifactSource,
  meta: ArtifactUploadMeta,
  opts: UploadArtifactOptions,
): Promise<Artifact> {
  const { signal, onProgress } = opts;
  throwIfAborted(signal);
  const { size, digest } =
    "bytes" in source
      ? {
          size: source.bytes.length,
          digest: `sha256:${createHash("sha256").update(source.bytes).digest("hex")}`,
        }
      : await hashFile(source.path, signal).catch((error: unknown) => {
          throwIfAborted(signal);
          throw error;
        });
  const uploadId = meta.uploadId ?? defaultUploadId(digest, size, meta);
  const options = callOptions(opts);
  const file = "path" in source ? await open(source.path, "r") : undefined;
  try {
    let lastOffset = -1;
    let stalled = 0;
    let lastError: unknown;
    for (;;) {
      const begun = await client.beginUpload(
        {
          protocolVersion: SDK_PROTOCOL_VERSION,
          uploadId,
          name: meta.name,
          mediaType: meta.mediaType,
          sizeBytes: BigInt(size),
          digest,
          jobId: meta.jobId ?? "",
          leaseId: meta.leaseId ?? "",
        },
        options,
      );
      if (begun.existingArtifact !== undefined) {
        onProgress?.(size, size);
        return begun.existingArtifact;
      }
      const offset = Number(begun.committedOffset);
      if (offset >= size) break;
      stalled = offset > lastOffset ? 0 : stalled + 1;
      lastOffset = offset;
      if (stalled >= MAX_STALLED_ATTEMPTS) {
        throw (
          lastError ?? new ConnectError(`upload "${uploadId}" makes no progress`, Code.Unavailable)
        );
      }
      const chunkBytes = begun.maxChunkBytes > 0 ? begun.maxChunkBytes : DEFAULT_CHUNK_BYTES;
      try {
        const sent = await client.uploadChunks(
          chunksOf(source, file, { uploadId, offset, size, chunkBytes, signal, onProgress }),
          options,
        );
        if (Number(sent.committedOffset) >= size) break;
      } catch (error) {
        if (signal?.aborted || !isTransient(error)) throw error;
        // Reopen: BeginUpload tells where the broken stream stopped.
        lastError = error;
      }
    }
    const committed = await client.commitUpload(
      { protocolVersion: SDK_PROTOCOL_VERSION, uploadId, digest, sizeBytes: BigInt(size) },
      options,
    );
    if (committed.artifact === undefined) {
      throw new ConnectError("CommitUpload answered no artifact", Code.Internal);
    }
    onProgress?.(size, size);
    return committed.artifact;
  } finally {
    await file?.close();
  }
}

interface ChunkPlan {
  readonly uploadId: string;
  readonly offset: number;
  readonly size: number;
  readonly chunkBytes: number;
  readonly signal: AbortSignal | undefined;
  readonly onProgress: ((sent: number, total: number) => void) | undefined;
}

/** The UploadChunks messages from `plan.offset` to the end, read one chunk at a time. */
async function* chunksOf(
  source: ArtifactSource,
  file: FileHandle | undefined,
  plan: ChunkPlan,
): AsyncGenerator<MessageInitShape<typeof UploadChunksRequestSchema>> {
  const { uploadId, size, chunkBytes, signal, onProgress } = plan;
  let offset = plan.offset;
  onProgress?.(offset, size);
  while (offset < size) {
    throwIfAborted(signal);
    const data = await readSource(source, file, offset, Math.min(chunkBytes, size - offset));
    yield {
      protocolVersion: SDK_PROTOCOL_VERSION,
      uploadId,
      offset: BigInt(offset),
      data,
      sha256: sha256(data),
    };
    // Resumed: the transport has taken the chunk.
    offset += data.length;
    onProgress?.(offset, size);
  }
}

/**
 * Downloads artifact `artifactId` to `destPath` and returns its record. Bytes go to
 * `<destPath>.partial` first, which a later call resumes from its length; each chunk's SHA-256
 * is checked as it arrives and the whole file's against `artifact.content.digest`, then the file
 * is fsynced and renamed to `destPath` (replacing it). When a resumed partial file turns out not to
 * match (it held other content), the download restarts once from the beginning.
 *
 * @throws ConnectError from the server (not_found, permission_denied, …); data_loss when the
 * content does not match its digest (the partial file is deleted); canceled when `signal` aborts.
 */
export async function downloadArtifact(
  client: Client<typeof ArtifactService>,
  artifactId: string,
  destPath: string,
  opts: DownloadArtifactOptions = {},
): Promise<Artifact> {
  throwIfAborted(opts.signal);
  const options = callOptions(opts);
  const { artifact } = await client.getArtifact(
    { protocolVersion: SDK_PROTOCOL_VERSION, artifactId },
    options,
  );
  const content = artifact?.content;
  if (artifact === undefined || content === undefined) {
    throw new ConnectError(`GetArtifact answered no record for "${artifactId}"`, Code.Internal);
  }
  const partialPath = `${destPath}.partial`;
  const first = await downloadInto(client, artifact, partialPath, opts, options);
  if (first.digest !== content.digest && first.resumedFrom > 0) {
    // The partial file held other bytes than this artifact's: start over once.
    await unlink(partialPath);
    const again = await downloadInto(client, artifact, partialPath, opts, options);
    if (again.digest === content.digest) return finish(partialPath, destPath, artifact);
    return failDigest(partialPath, artifactId, again.digest, content.digest);
  }
  if (first.digest !== content.digest) {
    return failDigest(partialPath, artifactId, first.digest, content.digest);
  }
  return finish(partialPath, destPath, artifact);
}

async function failDigest(
  partialPath: string,
  artifactId: string,
  actual: string,
  expected: string,
): Promise<never> {
  await unlink(partialPath).catch(() => undefined);
  throw new ConnectError(
    `artifact "${artifactId}" downloaded as ${actual}, not its digest ${expected}; the partial file was deleted`,
    Code.DataLoss,
  );
}

async function finish(
  partialPath: string,
  destPath: string,
  artifact: Artifact,
): Promise<Artifact> {
  await rename(partialPath, destPath);
  await syncDirectory(dirname(destPath));
  return artifact;
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, "r").catch(() => undefined);
  try {
    // Best effort: some file systems refuse fsync on a directory.
    await handle?.sync().catch(() => undefined);
  } finally {
    await handle?.close();
  }
}

/**
 * Brings `partialPath` up to the artifact's full size, resuming from its current length, and
 * returns the digest of what it then holds.
 */
async function downloadInto(
  client: Client<typeof ArtifactService>,
  artifact: Artifact,
  partialPath: string,
  opts: DownloadArtifactOptions,
  options: CallOptions,
): Promise<{ digest: string; resumedFrom: number }> {
  const content = artifact.content;
  const size = Number(content?.sizeBytes ?? 0n);
  const hash = createHash("sha256");
  const file = await open(partialPath, constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    let offset = (await file.stat()).size;
    if (offset > size) {
      await file.truncate(0);
      offset = 0;
    }
    const resumedFrom = offset;
    await hashPrefix(file, offset, hash, opts.signal);
    opts.onProgress?.(offset, size);
    let stalled = 0;
    let lastError: unknown;
    while (offset < size) {
      const before = offset;
      try {
        const request = {
          protocolVersion: SDK_PROTOCOL_VERSION,
          artifactId: artifact.artifactId,
          offset: BigInt(offset),
        };
        await consumeStream(
          (signal) => client.downloadArtifact(request, { ...options, signal }),
          options.signal,
          async (message) => {
            if (
              message.artifact !== undefined &&
              message.artifact.content?.digest !== content?.digest
            ) {
              throw new ConnectError(
                `artifact "${artifact.artifactId}" changed its digest during the download`,
                Code.DataLoss,
              );
            }
            throwIfAborted(opts.signal);
            if (message.data.length === 0) return;
            if (Number(message.offset) !== offset) {
              throw new ConnectError(
                `the server sent offset ${message.offset} where ${offset} was expected`,
                Code.Aborted,
              );
            }
            if (!sameBytes(sha256(message.data), message.sha256)) {
              throw new ConnectError(
                `the chunk at offset ${offset} failed its SHA-256`,
                Code.Aborted,
              );
            }
            if (offset + message.data.length > size) {
              throw new ConnectError(
                `the server sent bytes past the artifact's size (${size})`,
                Code.DataLoss,
              );
            }
            await writeAll(file, message.data, offset);
            hash.update(message.data);
            offset += message.data.length;
            opts.onProgress?.(offset, size);
          },
        );
      } catch (error) {
        if (opts.signal?.aborted || !isTransient(error)) throw error;
        lastError = error;
      }
      stalled = offset > before ? 0 : stalled + 1;
      if (offset < size && stalled >= MAX_STALLED_ATTEMPTS) {
        throw (
          lastError ??
          new ConnectError(
            `the download of "${artifact.artifactId}" stopped at ${offset} of ${size} bytes`,
            Code.Unavailable,
          )
        );
      }
    }
    await file.sync();
    return { digest: `sha256:${hash.digest("hex")}`, resumedFrom };
  } finally {
    await file.close();
  }
}

/**
 * Reads the server stream `open` starts, handing each message to `onMessage`. When reading stops
 * early (`onMessage` threw, e.g. a chunk failed its check or the caller aborted), cancels the call
 * and reads it to its end: only a stream read to its end or to its error clears Connect's deadline
 * timer, which would otherwise keep the process alive until the deadline.
 */
async function consumeStream<T>(
  open: (signal: AbortSignal) => AsyncIterable<T>,
  outer: AbortSignal | undefined,
  onMessage: (message: T) => Promise<void>,
): Promise<void> {
  const scope = new AbortController();
  const follow = () => scope.abort(outer?.reason);
  if (outer?.aborted) follow();
  else outer?.addEventListener("abort", follow, { once: true });
  const messages = open(scope.signal)[Symbol.asyncIterator]();
  let settled = false;
  try {
    for (;;) {
      let next: IteratorResult<T>;
      try {
        next = await messages.next();
      } catch (error) {
        settled = true;
        throw error;
      }
      if (next.done === true) {
        settled = true;
        return;
      }
      await onMessage(next.value);
    }
  } finally {
    outer?.removeEventListener("abort", follow);
    if (!settled) {
      scope.abort();
      try {
        while ((await messages.next()).done !== true) {
          // Messages already buffered before the cancel: dropped.
        }
      } catch {
        // The cancelled call's error: expected.
      }
    }
  }
}

/** Writes all of `data` at `position`. */
async function writeAll(file: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await file.write(
      data,
      written,
      data.length - written,
      position + written,
    );
    written += bytesWritten;
  }
}

/** Feeds the first `length` bytes of `file` into `hash`. */
async function hashPrefix(
  file: FileHandle,
  length: number,
  hash: Hash,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (length === 0) return;
  const buffer = Buffer.allocUnsafe(Math.min(FILE_READ_BYTES, length));
  let position = 0;
  while (position < length) {
    throwIfAborted(signal);
    const { bytesRead } = await file.read(
      buffer,
      0,
      Math.min(buffer.length, length - position),
      position,
    );
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
}
