import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { toHex } from "./hash.js";
import { ResultManifestError, resultHash, resultManifest } from "./result-manifest.js";

const a = `sha256:${"a".repeat(64)}`;
const b = `sha256:${"b".repeat(64)}`;

describe("result manifest", () => {
  it("sorts artifacts by name, one line each, and hashes the text with SHA-256", () => {
    const entries = [
      { name: "predictions", digest: b },
      { name: "metrics", digest: a },
    ];
    const text = resultManifest(entries);
    assert.equal(text, `metrics ${a}\npredictions ${b}\n`);
    const expected = createHash("sha256").update(text, "utf8").digest("hex");
    assert.equal(toHex(resultHash(entries)), expected);
    assert.equal(toHex(resultHash([...entries].reverse())), expected);
  });

  it("refuses an empty result, repeated names, bad names and malformed digests", () => {
    assert.throws(() => resultManifest([]), ResultManifestError);
    assert.throws(
      () =>
        resultManifest([
          { name: "model", digest: a },
          { name: "model", digest: b },
        ]),
      /repeats/,
    );
    assert.throws(() => resultManifest([{ name: "Model X", digest: a }]), /not allowed/);
    assert.throws(() => resultManifest([{ name: "model", digest: "sha256:ABC" }]), /digest/);
  });
});
