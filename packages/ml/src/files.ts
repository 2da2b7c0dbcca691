/** Small file helpers of the executors. */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Writes `data` to `<workDir>/<fileName>` (creating the directory) and returns the path. */
export async function writeWorkFile(
  workDir: string,
  fileName: string,
  data: string | Uint8Array,
): Promise<string> {
  await mkdir(workDir, { recursive: true });
  const path = join(workDir, fileName);
  await writeFile(path, data);
  return path;
}

/** "sha256:<hex>" of the file at `path` and its size, read as a stream. */
export async function digestFile(
  path: string,
  signal?: AbortSignal,
): Promise<{ digest: string; sizeBytes: number }> {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  const stream = createReadStream(path, signal === undefined ? {} : { signal });
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest("hex")}`, sizeBytes };
}

/** "sha256:<hex>" of `bytes`. */
export function digestBytes(bytes: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
