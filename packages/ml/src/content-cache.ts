/**
 * A content-addressed cache of models and datasets on a node (or validator): each ContentRef
 * resolves to a local file `<dir>/sha256/<hex>` whose bytes have been checked against the ref's
 * SHA-256 digest (and size, when given). Sources by URI scheme:
 * - "file:///abs/path": the file is copied into the cache while hashing (a copy, so a later change
 *   of the source file cannot alter what a job reads after the check);
 * - "http://", "https://": fetched with the global fetch, at most `ref.sizeBytes` bytes (or
 *   `maxBytes` when the ref gives no size);
 * - "artifact://<id>": downloaded by the supplied `fetchArtifact` (the job server's
 *   ArtifactService);
 * - "" (no URI): only what is already cached.
 * Content is written to a temporary file and renamed into place after the check, so a cached
 * file is always complete and verified. Bytes that do not match the digest are deleted and
 * refused with JobInputError. Concurrent resolves of one digest share a single download, which is
 * aborted only when every caller waiting for it has aborted.
 */
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { fileURLToPath } from "node:url";
import type { ContentRef } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { ContentUnavailableError, JobInputError } from "./errors.js";
import { digestFile } from "./files.js";

/** What the cache needs of a ContentRef (tessera.common.v1.ContentRef satisfies it). */
export type ContentRefLike = Pick<ContentRef, "digest" | "uri"> & {
  readonly sizeBytes: bigint | number;
};

/**
 * Downloads an "artifact://<id>" ref's bytes to `destPath` (a fresh temporary file); the cache
 * verifies them afterwards.
 */
export type ArtifactFetcher = (
  ref: ContentRefLike,
  destPath: string,
  signal: AbortSignal,
) => Promise<void>;

/** Options of {@link createContentCache}. */
export interface ContentCacheOptions {
  /** The cache directory (created when missing). */
  readonly dir: string;
  /** Fetcher for "artifact://" refs; without it such refs are ContentUnavailableError. */
  readonly fetchArtifact?: ArtifactFetcher | undefined;
  /** Most bytes fetched over http(s) for a ref without a size; default 1 GiB. */
  readonly maxBytes?: number | undefined;
}

/** The cache. */
export interface ContentCache {
  /**
   * The local path of `ref`'s verified bytes, fetching them when not cached.
   * @throws JobInputError for a malformed digest, bytes that do not match it, a missing file:// source
   *   or an unsupported URI scheme; ContentUnavailableError when a download fails; the signal's
   *   reason when `signal` aborts.
   */
  resolve(ref: ContentRefLike, signal: AbortSignal): Promise<string>;
  /** Where content with `digest` lives (whether or not it is cached yet). */
  pathOf(digest: string): string;
}

const DIGEST_PATTERN = /^sha256:([0-9a-f]{64})$/;
const DEFAULT_MAX_BYTES = 1024 * 1024 * 1024;

function hexOf(digest: string): string {
  const match = DIGEST_PATTERN.exec(digest);
  if (match?.[1] === undefined)
    throw new JobInputError("content digest must be sha256:<64 lowercase hex>");
  return match[1];
}

function limitBytes(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > limit)
        callback(new JobInputError(`content is larger than its declared ${limit} bytes`));
      else callback(null, chunk);
    },
  });
}

function originOf(uri: string): string {
  try {
    return new URL(uri).origin;
  } catch {
    return "the URL";
  }
}

/** Resolves when `promise` does, or rejects with the signal's reason when `signal` aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** A cache in `options.dir`; see the module comment. */
export function createContentCache(options: ContentCacheOptions): ContentCache {
  const contentDir = join(options.dir, "sha256");
  const tmpDir = join(options.dir, "tmp");
  const inflight = new Map<
    string,
    { promise: Promise<string>; controller: AbortController; waiters: number }
  >();

  async function cached(hex: string, size: number): Promise<boolean> {
    try {
      const info = await stat(join(contentDir, hex));
      if (size > 0 && info.size !== size) {
        // Not what was verified on the way in: drop it and fetch again.
        await rm(join(contentDir, hex), { force: true });
        return false;
      }
      return info.isFile();
    } catch {
      return false;
    }
  }

  async function download(ref: ContentRefLike, dest: string, signal: AbortSignal): Promise<void> {
    const uri = ref.uri;
    const size = Number(ref.sizeBytes);
    if (uri.startsWith("file://")) {
      let source: string;
      try {
        source = fileURLToPath(uri);
      } catch {
        throw new JobInputError("content uri is not a valid file:// URL");
      }
      try {
        await pipeline(createReadStream(source), createWriteStream(dest), { signal });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") {
          throw new JobInputError(
            `content ${ref.digest} is not on this node (file:// source missing)`,
          );
        }
        throw error;
      }
      return;
    }
    if (uri.startsWith("http://") || uri.startsWith("https://")) {
      const limit = size > 0 ? size : (options.maxBytes ?? DEFAULT_MAX_BYTES);
      let response: Response;
      try {
        response = await fetch(uri, { signal, redirect: "follow" });
      } catch (error) {
        signal.throwIfAborted();
        throw new ContentUnavailableError(
          `fetching content from ${originOf(uri)} failed: ${(error as Error).message}`,
        );
      }
      if (!response.ok || response.body === null) {
        await response.body?.cancel();
        throw new ContentUnavailableError(
          `fetching content from ${originOf(uri)} answered HTTP ${response.status}`,
        );
      }
      const declared = Number(response.headers.get("content-length") ?? "0");
      if (declared > limit) {
        await response.body.cancel();
        throw new JobInputError(`content is larger than its declared ${limit} bytes`);
      }
      await pipeline(
        Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
        limitBytes(limit),
        createWriteStream(dest),
        { signal },
      );
      return;
    }
    if (uri.startsWith("artifact://")) {
      if (options.fetchArtifact === undefined) {
        throw new ContentUnavailableError(
          "no artifact fetcher is configured for artifact:// content",
        );
      }
      await options.fetchArtifact(ref, dest, signal);
      return;
    }
    if (uri === "") throw new JobInputError(`content ${ref.digest} is not cached and has no uri`);
    throw new JobInputError(
      `content uri scheme of ${originOf(uri)} is not supported (file, http, https, artifact)`,
    );
  }

  async function fetchInto(ref: ContentRefLike, hex: string, signal: AbortSignal): Promise<string> {
    await mkdir(contentDir, { recursive: true });
    await mkdir(tmpDir, { recursive: true });
    const temp = join(tmpDir, `${hex}.${randomBytes(6).toString("hex")}`);
    try {
      await download(ref, temp, signal);
      const { digest, sizeBytes } = await digestFile(temp, signal);
      const size = Number(ref.sizeBytes);
      if (size > 0 && sizeBytes !== size) {
        throw new JobInputError(
          `content ${ref.digest} has ${sizeBytes} bytes, its ref says ${size}`,
        );
      }
      if (digest !== ref.digest) {
        throw new JobInputError(`content bytes do not match digest ${ref.digest} (got ${digest})`);
      }
      const path = join(contentDir, hex);
      await rename(temp, path);
      return path;
    } finally {
      await rm(temp, { force: true });
    }
  }

  return {
    pathOf(digest) {
      return join(contentDir, hexOf(digest));
    },
    async resolve(ref, signal) {
      signal.throwIfAborted();
      const hex = hexOf(ref.digest);
      if (await cached(hex, Number(ref.sizeBytes))) return join(contentDir, hex);
      signal.throwIfAborted();
      let entry = inflight.get(hex);
      if (entry === undefined) {
        const controller = new AbortController();
        const created = {
          controller,
          waiters: 0,
          promise: fetchInto(ref, hex, controller.signal).finally(() => {
            if (inflight.get(hex) === created) inflight.delete(hex);
          }),
        };
        entry = created;
        inflight.set(hex, created);
      }
      const shared = entry;
      shared.waiters++;
      try {
        return await untilAborted(shared.promise, signal);
      } finally {
        shared.waiters--;
        if (shared.waiters === 0 && signal.aborted) {
          // Nobody waits any more: stop the download, and let a later caller start afresh.
          shared.controller.abort(signal.reason);
          if (inflight.get(hex) === shared) inflight.delete(hex);
        }
      }
    },
  };
}

/** SHA-256 digest ("sha256:<hex>") of a local file, for building ContentRefs. */
export async function contentDigestOf(
  path: string,
): Promise<{ digest: string; sizeBytes: number }> {
  return digestFile(path);
}
