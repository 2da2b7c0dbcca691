/**
 * The result manifest of a batch job, computed here with node:crypto to the contract's rules
 * (batch-contract.md, "Result of a job"; identical to @tessera/identity/result-manifest, which
 * this package does not depend on): one line "<name> <digest>\n" per artifact, sorted by name
 * bytewise; the result hash a node signs is the SHA-256 of that UTF-8 text.
 */
import { createHash } from "node:crypto";

/** One artifact of a result. */
export interface ManifestEntry {
  readonly name: string;
  readonly digest: string;
}

const NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

/**
 * The manifest text of `entries`, or an error text when they cannot form a manifest (no
 * entries, a bad or repeated name, a malformed digest).
 */
export function manifestText(
  entries: readonly ManifestEntry[],
): { text: string } | { error: string } {
  if (entries.length === 0) return { error: "the result has no artifacts" };
  const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let text = "";
  let previous: string | undefined;
  for (const { name, digest } of sorted) {
    if (!NAME_PATTERN.test(name))
      return { error: `artifact name ${JSON.stringify(name)} is not allowed` };
    if (name === previous) return { error: `artifact name ${name} repeats` };
    if (!DIGEST_PATTERN.test(digest)) return { error: `artifact ${name} has a malformed digest` };
    text += `${name} ${digest}\n`;
    previous = name;
  }
  return { text };
}

/** SHA-256 of a manifest text (32 bytes). */
export function manifestHash(text: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(text, "utf8").digest());
}
