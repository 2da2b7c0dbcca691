import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { hashRequestBody, hashRequestMessage } from "@tessera/identity/request-signing";
import { TransferRequestSchema } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { EMPTY_BODY_HASH, hashMessage, peekFirst } from "./body-hash.js";

describe("body hash", () => {
  it("is @tessera/identity's hashRequestMessage (SHA3-256 of the binary encoding)", () => {
    const message = create(TransferRequestSchema, { transferId: "t-1", amount: "42" });
    assert.deepEqual(
      hashMessage(TransferRequestSchema, message),
      hashRequestMessage(TransferRequestSchema, message),
    );
    assert.deepEqual(EMPTY_BODY_HASH, hashRequestBody(new Uint8Array(0)));
    assert.deepEqual(
      EMPTY_BODY_HASH,
      hashMessage(TransferRequestSchema, create(TransferRequestSchema)),
    );
  });

  it("peekFirst returns the first message and then the whole stream in order", async () => {
    async function* numbers() {
      yield 1;
      yield 2;
      yield 3;
    }
    const peeked = await peekFirst(numbers());
    assert.equal(peeked.first, 1);
    const all: number[] = [];
    for await (const n of peeked.messages) all.push(n);
    assert.deepEqual(all, [1, 2, 3]);

    async function* none() {}
    const empty = await peekFirst(none());
    assert.equal(empty.first, undefined);
    for await (const _ of empty.messages) assert.fail("no messages expected");
  });

  it("stopping the peeked stream early stops the source", async () => {
    let finished = false;
    async function* source() {
      try {
        yield 1;
        yield 2;
        yield 3;
      } finally {
        finished = true;
      }
    }
    const peeked = await peekFirst(source());
    for await (const n of peeked.messages) {
      if (n === 2) break;
    }
    assert.equal(finished, true);
  });
});
