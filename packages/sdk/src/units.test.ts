import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseByteSize, parseDurationMs } from "./units.js";

describe("parseDurationMs and parseByteSize", () => {
  it("reads numbers with units, and bare whole numbers as milliseconds or bytes", () => {
    assert.equal(parseDurationMs("500ms"), 500);
    assert.equal(parseDurationMs("90s"), 90_000);
    assert.equal(parseDurationMs("1.5h"), 5_400_000);
    assert.equal(parseDurationMs("2d"), 172_800_000);
    assert.equal(parseDurationMs(1200n), 1200);
    assert.equal(parseByteSize("512MiB"), 536_870_912);
    assert.equal(parseByteSize("2gb"), 2_000_000_000);
    assert.equal(parseByteSize("1 KiB"), 1024);
    assert.equal(parseByteSize(4096), 4096);
  });

  it("explains what it expected instead", () => {
    assert.equal(
      parseDurationMs("soon"),
      'must be a duration such as 90s, 10m, 1h or 2d, got "soon"',
    );
    assert.equal(parseDurationMs("3w"), 'must be a duration such as 90s, 10m, 1h or 2d, got "3w"');
    assert.equal(parseDurationMs(-1), "must be a duration such as 90s, 10m, 1h or 2d, got -1");
    assert.equal(
      parseDurationMs("0.5ms"),
      'must come to a whole number of milliseconds (at most 2^53 - 1), got "0.5ms"',
    );
    assert.equal(parseByteSize(true), "must be a size such as 512MiB, 2GB or a number of bytes");
    assert.equal(
      parseByteSize("1.5"),
      'must come to a whole number of bytes (at most 2^53 - 1), got "1.5"',
    );
  });
});
