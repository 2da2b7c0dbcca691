/**
 * The result manifest of a batch job (tessera.job.v1.JobResult): one line "<name> <digest>\n" per
 * artifact, sorted by name bytewise. Its SHA-256 is the `result_hash` a compute node signs in its
 * ComputeCompletion, so the signature covers every artifact by content hash; validators get the
 * manifest text as the completion's evidence and can check it against the signed hash.
 */
import { sha256 } from "./hash.js";

/** One artifact of a result: its role name and `sha256:<hex>` digest. */
export interface ManifestEntry {
  readonly name: string;
  readonly digest: string;
}

const namePattern = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const digestPattern = /^sha256:[0-9a-f]{64}$/;

/** A result that cannot be put in a manifest (bad or repeated name, malformed digest). */
export class ResultManifestError extends Error {
  override readonly name = "ResultManifestError";
}

/** Compares strings by their UTF-8 bytes (names are ASCII, so code units agree). */
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The manifest text of `entries`.
 * @throws ResultManifestError on an empty list, a name that is not lower_snake_case-ish ASCII
 * (`[a-z0-9][a-z0-9_.-]*`, at most 64), a repeated name, or a digest that is not `sha256:<64 hex>`.
 */
export function resultManifest(entries: readonly ManifestEntry[]): string {
  if (entries.length === 0) throw new ResultManifestError("a result needs at least one artifact");
  const sorted = [...entries].sort((a, b) => byteOrder(a.name, b.name));
  let text = "";
  let previous: string | undefined;
  for (const { name, digest } of sorted) {
    if (!namePattern.test(name)) {
      throw new ResultManifestError(`artifact name ${JSON.stringify(name)} is not allowed`);
    }
    if (name === previous) throw new ResultManifestError(`artifact name ${name} repeats`);
    if (!digestPattern.test(digest)) {
      throw new ResultManifestError(`artifact ${name}: digest must be sha256:<64 lowercase hex>`);
    }
    text += `${name} ${digest}\n`;
    previous = name;
  }
  return text;
}

/** SHA-256 of the manifest text of `entries` (32 bytes): the result hash a node signs. */
export function resultHash(entries: readonly ManifestEntry[]): Uint8Array {
  return sha256(new TextEncoder().encode(resultManifest(entries)));
}
