/**
 * The job server's artifact store: chunked, checksummed, resumable uploads that become immutable,
 * content-addressed artifacts, and ranged reads of them. Metadata (uploads, artifacts) lives in the
 * job server's @tessera/store database (SQLite or PostgreSQL, tables in ./tables.ts); the bytes
 * live on disk under `<dataDir>/artifacts` (./blob-files.ts), one file per SHA-256 digest.
 *
 * Durability: a chunk is written and fsynced before the upload's committed offset moves past it,
 * and a commit publishes the verified file before the artifact row exists, so everything a caller
 * was told survives a crash. The rules are those of tessera/job/v1/artifact_service.proto; the
 * errors are {@link ArtifactError}s. This module knows nothing of Connect.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Artifact } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import type { Logger } from "@tessera/runtime";
import type { Store } from "@tessera/store";
import type { Selectable } from "kysely";
import { type BlobFiles, createBlobFiles } from "./blob-files.js";
import { ArtifactError, invalidArgument } from "./errors.js";
import { createKeyedMutex } from "./keyed-mutex.js";
import { artifactFromRow } from "./records.js";
import type { ArtifactTables, ArtifactUploadTable } from "./tables.js";
import {
  checkDigest,
  checkMediaType,
  checkName,
  checkReferenceId,
  checkUploadId,
} from "./validation.js";

/** Largest chunk by default: 1 MiB, as the proto fixes it. */
export const DEFAULT_MAX_CHUNK_BYTES = 1024 * 1024;
/** Largest artifact by default: 8 GiB. */
export const DEFAULT_MAX_ARTIFACT_BYTES = 8 * 1024 * 1024 * 1024;
/** How long an untouched, uncommitted upload is kept by default: 24 hours. */
export const DEFAULT_UPLOAD_TTL_MS = 24 * 60 * 60 * 1000;
/** How often expired uploads are swept by default: every minute. */
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
/** How old a partial file without an open upload must be before the sweep deletes it. */
const ORPHAN_GRACE_MS = 10 * 60 * 1000;
const SWEEP_BATCH = 500;

/** What {@link createArtifactStore} needs. */
export interface ArtifactStoreOptions<DB extends ArtifactTables> {
  /** The job server's store, opened with {@link artifactMigrations} among its migrations. */
  readonly store: Store<DB>;
  /** The service's data directory; the bytes go under `<dataDir>/artifacts`. */
  readonly dataDir: string;
  /** Largest chunk accepted and sent, in bytes: at most and by default {@link DEFAULT_MAX_CHUNK_BYTES}. */
  readonly maxChunkBytes?: number | undefined;
  /** Largest artifact accepted, in bytes; default {@link DEFAULT_MAX_ARTIFACT_BYTES}. */
  readonly maxArtifactBytes?: number | undefined;
  /** Lifetime of an uncommitted upload after its last activity; default {@link DEFAULT_UPLOAD_TTL_MS}. */
  readonly uploadTtlMs?: number | undefined;
  /** Period of the background sweep of expired uploads; 0 turns it off. Default one minute. */
  readonly sweepIntervalMs?: number | undefined;
  /** The clock, Unix milliseconds; default `Date.now`. */
  readonly now?: (() => number) | undefined;
  readonly logger: Logger;
}

/** BeginUpload's fields, checked by {@link ArtifactStore.beginUpload}. */
export interface BeginUploadInput {
  /** The verified uploader. */
  readonly owner: string;
  readonly uploadId: string;
  readonly name: string;
  readonly mediaType: string;
  readonly sizeBytes: number;
  /** "sha256:<hex>" of the whole content, or "" when not known in advance. */
  readonly digest: string;
  /** "" when none. */
  readonly jobId: string;
  /** "" when none; requires a job id. */
  readonly leaseId: string;
}

/** Where an upload stands, as BeginUpload answers it. */
export interface UploadProgress {
  readonly uploadId: string;
  /** Bytes already stored: send chunks from here. */
  readonly committedOffset: number;
  readonly maxChunkBytes: number;
  /** When the upload is discarded if nothing more happens (Unix milliseconds). */
  readonly expiresAtMs: number;
  /** Set when the content is already an artifact of the caller: nothing needs uploading. */
  readonly existingArtifact: Artifact | undefined;
}

/** One UploadChunks message. */
export interface ChunkInput {
  readonly owner: string;
  readonly uploadId: string;
  readonly offset: number;
  readonly data: Uint8Array;
  /** SHA-256 of `data`, 32 bytes. */
  readonly sha256: Uint8Array;
}

/** CommitUpload's fields. */
export interface CommitInput {
  readonly owner: string;
  readonly uploadId: string;
  readonly digest: string;
  readonly sizeBytes: number;
}

/** What a handler needs to know of an upload before acting on it. */
export interface UploadInfo {
  readonly owner: string;
  readonly uploadId: string;
  readonly jobId: string;
  readonly leaseId: string;
  readonly state: "open" | "committed";
  readonly committedOffset: number;
  readonly sizeBytes: number;
}

/** A byte range of an artifact: `length` 0 means to the end. */
export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

/** One chunk read from an artifact. */
export interface ArtifactChunk {
  readonly offset: number;
  readonly data: Uint8Array;
  /** SHA-256 of `data`, 32 bytes. */
  readonly sha256: Uint8Array;
}

/** What one sweep removed. */
export interface SweepResult {
  /** Upload rows past their expiry (open ones with their partial file). */
  readonly expiredUploads: number;
  /** Partial files no open upload referred to. */
  readonly orphanFiles: number;
}

/** The artifact store; see the module comment. */
export interface ArtifactStore {
  readonly maxChunkBytes: number;
  readonly maxArtifactBytes: number;
  readonly uploadTtlMs: number;
  /**
   * Starts an upload, or resumes it: the same `uploadId` with the same metadata answers the offset
   * already stored (and the artifact, once committed). With a `digest` the caller already has as
   * an artifact of the same name, media type and job, answers that artifact and creates nothing.
   * @throws ArtifactError invalid_argument (a bad field), resource_exhausted (too large),
   * already_exists (the id was begun with other metadata).
   */
  beginUpload(input: BeginUploadInput): Promise<UploadProgress>;
  /**
   * Stores one chunk at the committed offset and answers the new committed offset, once the
   * chunk is on disk.
   * @throws ArtifactError invalid_argument (checksum, empty, oversized, past the size, short but
   * not last), not_found (unknown or expired upload), failed_precondition (not at the committed
   * offset, naming it; already committed).
   */
  appendChunk(input: ChunkInput): Promise<number>;
  /**
   * Verifies the whole content's size and SHA-256 and creates the artifact; idempotent for the
   * same digest. A digest that does not match the content discards the upload.
   * @throws ArtifactError invalid_argument (a bad field, size unlike BeginUpload's), not_found,
   * failed_precondition (incomplete; digest mismatch; committed with other content).
   */
  commitUpload(input: CommitInput): Promise<Artifact>;
  /** The caller's upload `uploadId`, or undefined when unknown or expired. */
  findUpload(owner: string, uploadId: string): Promise<UploadInfo | undefined>;
  /** The artifact `artifactId`, or undefined. */
  getArtifact(artifactId: string): Promise<Artifact | undefined>;
  /**
   * Reads `range` of `artifact` in chunks of at most {@link maxChunkBytes}, each with its SHA-256.
   * Yields nothing for an empty range.
   * @throws ArtifactError invalid_argument (offset past the size), data_loss (bytes missing).
   */
  readArtifact(
    artifact: Artifact,
    range: ByteRange,
    signal?: AbortSignal,
  ): AsyncIterable<ArtifactChunk>;
  /** Deletes expired uploads (and their partial files) and orphaned partial files now. */
  sweepExpired(): Promise<SweepResult>;
  /** Stops the background sweep and waits for running work. Safe to call twice; keeps the store open. */
  close(): Promise<void>;
}

type UploadRow = Selectable<ArtifactUploadTable>;

function sha256Bytes(data: Uint8Array): Uint8Array {
  const digest = createHash("sha256").update(data).digest();
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.byteLength);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const view = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return a.length === b.length && view(a).equals(view(b));
}

function checkPositiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function newArtifactId(): string {
  return `art_${randomBytes(16).toString("hex")}`;
}

/** Fields of an upload that must match when its id is used again. */
function metadataDifferences(row: UploadRow, input: BeginUploadInput): string[] {
  const differences: string[] = [];
  if (row.name !== input.name) differences.push("name");
  if (row.media_type !== input.mediaType) differences.push("media_type");
  if (Number(row.size_bytes) !== input.sizeBytes) differences.push("size_bytes");
  if (row.digest !== input.digest) differences.push("digest");
  if (row.job_id !== input.jobId) differences.push("job_id");
  if (row.lease_id !== input.leaseId) differences.push("lease_id");
  return differences;
}

/**
 * Checks BeginUpload's fields as {@link ArtifactStore.beginUpload} does, for callers that must
 * refuse bad input before anything else (e.g. before asking who may upload for a job).
 * @throws ArtifactError invalid_argument naming the field; resource_exhausted when `sizeBytes` is
 * above `maxArtifactBytes`.
 */
export function checkBeginUpload(input: BeginUploadInput, maxArtifactBytes: number): void {
  checkUploadId(input.uploadId);
  checkName(input.name);
  checkMediaType(input.mediaType);
  if (input.digest !== "") checkDigest(input.digest);
  checkReferenceId(input.jobId, "job_id");
  checkReferenceId(input.leaseId, "lease_id");
  if (input.leaseId !== "" && input.jobId === "") {
    throw invalidArgument("job_id", "is required with a lease_id");
  }
  if (input.sizeBytes > maxArtifactBytes) {
    throw new ArtifactError(
      "resource_exhausted",
      `size_bytes: ${input.sizeBytes} is above this server's artifact limit of ${maxArtifactBytes} bytes`,
    );
  }
}

/**
 * Opens the artifact store over `options.store` (whose migrations must include
 * {@link artifactMigrations}) and `<dataDir>/artifacts` (created when missing), and starts the
 * background sweep of expired uploads.
 */
export async function createArtifactStore<DB extends ArtifactTables>(
  options: ArtifactStoreOptions<DB>,
): Promise<ArtifactStore> {
  // The store's DB type includes ours; Kysely cannot see that through the generic.
  const store = options.store as unknown as Store<ArtifactTables>;
  const db = store.db;
  const logger = options.logger;
  const now = options.now ?? Date.now;
  const maxChunkBytes = checkPositiveInteger(
    options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES,
    "maxChunkBytes",
  );
  if (maxChunkBytes > DEFAULT_MAX_CHUNK_BYTES) {
    throw new TypeError(
      `maxChunkBytes must be at most 1 MiB (the proto's limit), got ${maxChunkBytes}`,
    );
  }
  const maxArtifactBytes = checkPositiveInteger(
    options.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES,
    "maxArtifactBytes",
  );
  const uploadTtlMs = checkPositiveInteger(
    options.uploadTtlMs ?? DEFAULT_UPLOAD_TTL_MS,
    "uploadTtlMs",
  );
  const sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
  const files: BlobFiles = createBlobFiles(options.dataDir);
  await files.init();
  const uploads = createKeyedMutex();
  const lockKey = (owner: string, uploadId: string) => `${owner}\n${uploadId}`;

  const selectUpload = (owner: string, uploadId: string) =>
    db
      .selectFrom("artifact_upload")
      .selectAll()
      .where("owner_address", "=", owner)
      .where("upload_id", "=", uploadId)
      .executeTakeFirst();

  const selectArtifact = async (artifactId: string) => {
    const row = await db
      .selectFrom("artifact")
      .selectAll()
      .where("artifact_id", "=", artifactId)
      .executeTakeFirst();
    return row === undefined ? undefined : artifactFromRow(row);
  };

  const isExpired = (row: UploadRow, at: number) => Number(row.expires_at_ms) <= at;

  /** Deletes an upload row and, for an open one, its partial file (row first: a crash leaves an orphan file, never a row without its bytes). */
  async function discard(row: UploadRow): Promise<void> {
    await db
      .deleteFrom("artifact_upload")
      .where("owner_address", "=", row.owner_address)
      .where("upload_id", "=", row.upload_id)
      .execute();
    if (row.state === "open") await files.removePartial(row.partial_file);
  }

  /** The caller's artifact with exactly this content and metadata, if any. */
  async function findSameArtifact(
    owner: string,
    digest: string,
    meta: { name: string; mediaType: string; jobId: string; sizeBytes: number },
  ): Promise<Artifact | undefined> {
    const row = await db
      .selectFrom("artifact")
      .selectAll()
      .where("owner_address", "=", owner)
      .where("digest", "=", digest)
      .where("name", "=", meta.name)
      .where("media_type", "=", meta.mediaType)
      .where("job_id", "=", meta.jobId)
      .orderBy("created_at_ms")
      .orderBy("artifact_id")
      .executeTakeFirst();
    if (row === undefined || Number(row.size_bytes) !== meta.sizeBytes) return undefined;
    // Identical only if the bytes are still there; otherwise upload them again.
    if (!(await files.hasBlob(digest.slice("sha256:".length)))) return undefined;
    return artifactFromRow(row);
  }

  /** The upload row, with an expired open upload treated as gone (and cleaned up). */
  async function liveUpload(owner: string, uploadId: string): Promise<UploadRow | undefined> {
    const row = await selectUpload(owner, uploadId);
    if (row === undefined) return undefined;
    if (isExpired(row, now())) {
      await discard(row);
      return undefined;
    }
    return row;
  }

  function notFound(uploadId: string): ArtifactError {
    return new ArtifactError(
      "not_found",
      `upload "${uploadId}" is unknown or expired; start it again with BeginUpload`,
    );
  }

  async function beginUpload(input: BeginUploadInput): Promise<UploadProgress> {
    checkBeginUpload(input, maxArtifactBytes);
    const { owner, uploadId } = input;
    return uploads.run(lockKey(owner, uploadId), async () => {
      const row = await liveUpload(owner, uploadId);
      if (row !== undefined) return resume(row, input);
      if (input.digest !== "") {
        const existing = await findSameArtifact(owner, input.digest, input);
        if (existing !== undefined) {
          return {
            uploadId,
            committedOffset: 0,
            maxChunkBytes,
            expiresAtMs: now() + uploadTtlMs,
            existingArtifact: existing,
          };
        }
      }
      const createdAt = now();
      await db
        .insertInto("artifact_upload")
        .values({
          owner_address: owner,
          upload_id: uploadId,
          name: input.name,
          media_type: input.mediaType,
          size_bytes: input.sizeBytes,
          digest: input.digest,
          job_id: input.jobId,
          lease_id: input.leaseId,
          committed_offset: 0,
          state: "open",
          partial_file: files.newPartialName(),
          artifact_id: null,
          created_at_ms: createdAt,
          expires_at_ms: createdAt + uploadTtlMs,
        })
        // Another replica began the same upload at the same moment: resume theirs.
        .onConflict((oc) => oc.columns(["owner_address", "upload_id"]).doNothing())
        .execute();
      const created = await selectUpload(owner, uploadId);
      if (created === undefined) throw notFound(uploadId);
      return resume(created, input);
    });
  }

  /** BeginUpload on an upload that exists: same metadata required. */
  async function resume(row: UploadRow, input: BeginUploadInput): Promise<UploadProgress> {
    const differences = metadataDifferences(row, input);
    if (differences.length > 0) {
      throw new ArtifactError(
        "already_exists",
        `upload_id "${input.uploadId}" was begun with other metadata (${differences.join(", ")} differ); choose a new upload_id`,
      );
    }
    if (row.state === "committed") {
      const artifact = row.artifact_id === null ? undefined : await selectArtifact(row.artifact_id);
      return {
        uploadId: row.upload_id,
        committedOffset: Number(row.committed_offset),
        maxChunkBytes,
        expiresAtMs: Number(row.expires_at_ms),
        existingArtifact: artifact,
      };
    }
    const expiresAtMs = now() + uploadTtlMs;
    await db
      .updateTable("artifact_upload")
      .set({ expires_at_ms: expiresAtMs })
      .where("owner_address", "=", row.owner_address)
      .where("upload_id", "=", row.upload_id)
      .where("state", "=", "open")
      .execute();
    const existing =
      input.digest === ""
        ? undefined
        : await findSameArtifact(row.owner_address, input.digest, input);
    return {
      uploadId: row.upload_id,
      committedOffset: Number(row.committed_offset),
      maxChunkBytes,
      expiresAtMs,
      existingArtifact: existing,
    };
  }

  async function appendChunk(input: ChunkInput): Promise<number> {
    const { owner, uploadId, offset, data } = input;
    checkUploadId(uploadId);
    if (data.length === 0) throw invalidArgument("data", "a chunk carries 1 byte or more");
    if (data.length > maxChunkBytes) {
      throw invalidArgument(
        "data",
        `${data.length} bytes is more than max_chunk_bytes (${maxChunkBytes})`,
      );
    }
    if (input.sha256.length !== 32) {
      throw invalidArgument("sha256", `must be 32 bytes, got ${input.sha256.length}`);
    }
    if (!sameBytes(sha256Bytes(data), input.sha256)) {
      throw invalidArgument(
        "sha256",
        `does not match the chunk's data at offset ${offset}; the chunk was not stored`,
      );
    }
    return uploads.run(lockKey(owner, uploadId), async () => {
      const row = await liveUpload(owner, uploadId);
      if (row === undefined) throw notFound(uploadId);
      if (row.state === "committed") {
        throw new ArtifactError("failed_precondition", `upload "${uploadId}" is already committed`);
      }
      const committed = Number(row.committed_offset);
      const size = Number(row.size_bytes);
      if (offset !== committed) {
        throw new ArtifactError(
          "failed_precondition",
          `chunk offset ${offset} is not the committed offset ${committed}; send chunks from offset ${committed}`,
        );
      }
      const end = offset + data.length;
      if (end > size) {
        throw invalidArgument(
          "data",
          `the chunk ends at byte ${end}, past the upload's size_bytes (${size})`,
        );
      }
      if (data.length < maxChunkBytes && end !== size) {
        throw invalidArgument(
          "data",
          `only the last chunk may be smaller than max_chunk_bytes (${maxChunkBytes}); got ${data.length} bytes at offset ${offset}`,
        );
      }
      await files.writeChunk(row.partial_file, offset, data);
      const result = await db
        .updateTable("artifact_upload")
        .set({ committed_offset: end, expires_at_ms: now() + uploadTtlMs })
        .where("owner_address", "=", owner)
        .where("upload_id", "=", uploadId)
        .where("state", "=", "open")
        .where("committed_offset", "=", offset)
        .executeTakeFirst();
      if (result.numUpdatedRows === 0n) {
        // Only another replica writing the same upload gets here.
        throw new ArtifactError(
          "failed_precondition",
          `upload "${uploadId}" moved on concurrently; call BeginUpload for the committed offset`,
        );
      }
      return end;
    });
  }

  async function commitUpload(input: CommitInput): Promise<Artifact> {
    const { owner, uploadId, digest, sizeBytes } = input;
    checkUploadId(uploadId);
    checkDigest(digest);
    return uploads.run(lockKey(owner, uploadId), async () => {
      const row = await liveUpload(owner, uploadId);
      if (row === undefined) throw notFound(uploadId);
      if (row.state === "committed") return committedAgain(row, digest);
      const size = Number(row.size_bytes);
      if (sizeBytes !== size) {
        throw invalidArgument(
          "size_bytes",
          `${sizeBytes} differs from the size_bytes given to BeginUpload (${size})`,
        );
      }
      const committed = Number(row.committed_offset);
      if (committed !== size) {
        throw new ArtifactError(
          "failed_precondition",
          `upload "${uploadId}" is incomplete: ${committed} of ${size} bytes stored; send chunks from offset ${committed}`,
        );
      }
      const actual = `sha256:${await files.hashPartial(row.partial_file, size)}`;
      const announced = row.digest;
      if (actual !== digest || (announced !== "" && announced !== actual)) {
        await discard(row);
        const expected = actual !== digest ? digest : announced;
        throw new ArtifactError(
          "failed_precondition",
          `the uploaded content's digest ${actual} does not match ${expected}; upload "${uploadId}" is discarded, begin it again`,
        );
      }
      const meta = {
        name: row.name,
        mediaType: row.media_type,
        jobId: row.job_id,
        sizeBytes: size,
      };
      const same = await findSameArtifact(owner, actual, meta);
      if (same === undefined) await files.publish(row.partial_file, actual.slice("sha256:".length));
      const committedAt = now();
      const artifactId = same?.artifactId ?? newArtifactId();
      await store.transaction(async (trx) => {
        if (same === undefined) {
          await trx
            .insertInto("artifact")
            .values({
              artifact_id: artifactId,
              name: row.name,
              media_type: row.media_type,
              digest: actual,
              size_bytes: size,
              owner_address: owner,
              job_id: row.job_id,
              created_at_ms: committedAt,
            })
            .execute();
        }
        const updated = await trx
          .updateTable("artifact_upload")
          .set({
            state: "committed",
            artifact_id: artifactId,
            expires_at_ms: committedAt + uploadTtlMs,
          })
          .where("owner_address", "=", owner)
          .where("upload_id", "=", uploadId)
          .where("state", "=", "open")
          .executeTakeFirst();
        if (updated.numUpdatedRows === 0n) {
          throw new ArtifactError(
            "failed_precondition",
            `upload "${uploadId}" changed concurrently; commit it again`,
          );
        }
      });
      await files.removePartial(row.partial_file);
      const artifact = await selectArtifact(artifactId);
      if (artifact === undefined) throw notFound(uploadId);
      logger.info(
        { artifactId, uploadId, sizeBytes: size, digest: actual, deduplicated: same !== undefined },
        "artifact committed",
      );
      return artifact;
    });
  }

  async function committedAgain(row: UploadRow, digest: string): Promise<Artifact> {
    const artifact = row.artifact_id === null ? undefined : await selectArtifact(row.artifact_id);
    if (artifact === undefined) throw notFound(row.upload_id);
    if (artifact.content?.digest !== digest) {
      throw new ArtifactError(
        "failed_precondition",
        `upload "${row.upload_id}" is already committed with other content (${artifact.content?.digest ?? "?"})`,
      );
    }
    return artifact;
  }

  async function findUpload(owner: string, uploadId: string): Promise<UploadInfo | undefined> {
    const row = await selectUpload(owner, uploadId);
    if (row === undefined || isExpired(row, now())) return undefined;
    return {
      owner: row.owner_address,
      uploadId: row.upload_id,
      jobId: row.job_id,
      leaseId: row.lease_id,
      state: row.state,
      committedOffset: Number(row.committed_offset),
      sizeBytes: Number(row.size_bytes),
    };
  }

  async function* readArtifact(
    artifact: Artifact,
    range: ByteRange,
    signal?: AbortSignal,
  ): AsyncGenerator<ArtifactChunk> {
    const content = artifact.content;
    if (content === undefined) throw new ArtifactError("data_loss", "the artifact has no content");
    const size = Number(content.sizeBytes);
    if (range.offset > size) {
      throw invalidArgument(
        "offset",
        `${range.offset} is past the artifact's size (${size} bytes)`,
      );
    }
    const available = size - range.offset;
    const length = range.length === 0 ? available : Math.min(range.length, available);
    const hex = content.digest.slice("sha256:".length);
    for await (const chunk of files.readRange(hex, range.offset, length, maxChunkBytes, signal)) {
      yield { offset: chunk.offset, data: chunk.data, sha256: sha256Bytes(chunk.data) };
    }
  }

  async function sweepExpired(): Promise<SweepResult> {
    let expiredUploads = 0;
    for (;;) {
      const at = now();
      const rows = await db
        .selectFrom("artifact_upload")
        .select(["owner_address", "upload_id"])
        .where("expires_at_ms", "<=", at)
        .limit(SWEEP_BATCH)
        .execute();
      for (const { owner_address: owner, upload_id: uploadId } of rows) {
        await uploads.run(lockKey(owner, uploadId), async () => {
          const row = await selectUpload(owner, uploadId);
          if (row !== undefined && isExpired(row, now())) {
            await discard(row);
            expiredUploads += 1;
          }
        });
      }
      if (rows.length < SWEEP_BATCH) break;
    }
    const open = await db
      .selectFrom("artifact_upload")
      .select("partial_file")
      .where("state", "=", "open")
      .execute();
    const referenced = new Set(open.map((row) => row.partial_file));
    let orphanFiles = 0;
    // File times come from the file system's clock, not the injected one.
    const orphanBefore = Date.now() - ORPHAN_GRACE_MS;
    for (const file of await files.listPartials()) {
      if (!referenced.has(file.name) && file.mtimeMs < orphanBefore) {
        await files.removePartial(file.name);
        orphanFiles += 1;
      }
    }
    if (expiredUploads > 0 || orphanFiles > 0) {
      logger.info({ expiredUploads, orphanFiles }, "expired artifact uploads swept");
    }
    return { expiredUploads, orphanFiles };
  }

  let sweeping: Promise<unknown> = Promise.resolve();
  let closing: Promise<void> | undefined;
  const timer =
    sweepIntervalMs > 0
      ? setInterval(() => {
          sweeping = sweeping.then(() =>
            sweepExpired().catch((error: unknown) => {
              logger.error({ err: error }, "artifact upload sweep failed");
            }),
          );
        }, sweepIntervalMs)
      : undefined;
  timer?.unref();

  return {
    maxChunkBytes,
    maxArtifactBytes,
    uploadTtlMs,
    beginUpload,
    appendChunk,
    commitUpload,
    findUpload,
    getArtifact: selectArtifact,
    readArtifact,
    sweepExpired,
    close() {
      closing ??= (async () => {
        if (timer !== undefined) clearInterval(timer);
        await sweeping;
        await uploads.idle();
      })();
      return closing;
    },
  };
}
