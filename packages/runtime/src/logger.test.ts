import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createCapturingLogger } from "./test-service.js";

describe("createLogger", () => {
  it("redacts credentials and keys wherever a caller logs them", () => {
    const { logger, lines } = createCapturingLogger();
    logger.info(
      {
        headers: { authorization: "Bearer s3cret" },
        signature: "c2lnbmF0dXJl",
        node: { privateKey: "a2V5" },
      },
      "hello",
    );
    const [line] = lines;
    assert.equal(line?.msg, "hello");
    assert.equal(line?.service, "test");
    assert.equal(line?.level, "info");
    const text = JSON.stringify(line);
    for (const secret of ["s3cret", "c2lnbmF0dXJl", "a2V5"]) assert.ok(!text.includes(secret));
  });
});
