import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type NodeRecord, NodeRecordSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { sha256 } from "./hash.js";
import { generateKeyPair } from "./keys.js";
import {
  findNodeRecordProblem,
  sealNodeRecord,
  signNodeRecord,
  solveNodeRecordPow,
  verifyNodeRecord,
  verifyNodeRecordPow,
} from "./node-record.js";
import { leadingZeroBits } from "./proof-of-work.js";
import { RecordKeyMismatchError, recordSigningBytes } from "./signed-record.js";
import { sampleNodeRecord } from "./test-node-record.js";

const DIFFICULTY = 10;

describe("node record", () => {
  it("seals a record that verifies after a trip over the wire", async () => {
    const keyPair = generateKeyPair();
    const sealed = await sealNodeRecord(sampleNodeRecord(keyPair), keyPair, DIFFICULTY);
    assert.equal(sealed.powDifficulty, DIFFICULTY);
    assert.equal(sealed.signature.length, 64);
    const received = fromBinary(NodeRecordSchema, toBinary(NodeRecordSchema, sealed));
    assert.ok(verifyNodeRecord(received));
    assert.ok(verifyNodeRecordPow(received, DIFFICULTY));
    assert.equal(findNodeRecordProblem(received, { minPowDifficulty: DIFFICULTY }), undefined);
  });

  it("hashes the encoding with signature empty and pow_nonce inside, as common.proto says", async () => {
    const keyPair = generateKeyPair();
    const sealed = await sealNodeRecord(sampleNodeRecord(keyPair), keyPair, DIFFICULTY);
    const unsigned = toBinary(NodeRecordSchema, { ...sealed, signature: new Uint8Array(0) });
    assert.deepEqual(recordSigningBytes(NodeRecordSchema, sealed), unsigned);
    assert.ok(leadingZeroBits(sha256(unsigned)) >= DIFFICULTY);
    // The nonce is covered: another nonce breaks the proof of work and the signature.
    const otherNonce = { ...sealed, powNonce: sealed.powNonce + 1n };
    assert.equal(verifyNodeRecord(otherNonce), false);
  });

  it("rejects a record tampered after signing", async () => {
    const keyPair = generateKeyPair();
    const sealed = await sealNodeRecord(sampleNodeRecord(keyPair), keyPair, DIFFICULTY);
    const tampered: NodeRecord[] = [
      { ...sealed, pricePerHour: "1" },
      { ...sealed, sequence: sealed.sequence + 1n },
      { ...sealed, capabilities: ["training"] },
      { ...sealed, powDifficulty: DIFFICULTY + 1 },
    ];
    for (const record of tampered) {
      assert.equal(verifyNodeRecord(record), false);
      assert.ok(findNodeRecordProblem(record));
    }
    // Flip each bit of the wire bytes in turn. protobuf-es decodes a known field by its schema
    // type even under a flipped wire-type bit, so some flips decode to the very same record; every
    // flip that changes what the record says must be rejected.
    const wire = toBinary(NodeRecordSchema, sealed);
    const canonical = Buffer.from(wire).toString("hex");
    let changedContent = 0;
    for (let i = 0; i < wire.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const changed = Uint8Array.from(wire);
        changed[i] = (changed[i] as number) ^ (1 << bit);
        let record: NodeRecord;
        try {
          record = fromBinary(NodeRecordSchema, changed);
        } catch {
          continue;
        }
        if (Buffer.from(toBinary(NodeRecordSchema, record)).toString("hex") === canonical) continue;
        changedContent++;
        assert.equal(verifyNodeRecord(record), false, `flip of bit ${bit} in byte ${i} accepted`);
      }
    }
    assert.ok(changedContent > wire.length * 4, `only ${changedContent} flips changed the record`);
  });

  it("rejects a record whose address is not its key's, or that another key signed", async () => {
    const keyPair = generateKeyPair();
    const intruder = generateKeyPair();
    const sealed = await sealNodeRecord(sampleNodeRecord(keyPair), keyPair, 4);
    assert.equal(verifyNodeRecord({ ...sealed, address: intruder.address }), false);
    assert.equal(
      findNodeRecordProblem({ ...sealed, address: intruder.address }),
      "address does not derive from public_key",
    );
    const resigned = {
      ...sealed,
      signature: intruder.sign(recordSigningBytes(NodeRecordSchema, sealed)),
    };
    assert.equal(verifyNodeRecord(resigned), false);
    assert.equal(findNodeRecordProblem(resigned), "signature does not verify against public_key");
    assert.throws(() => signNodeRecord(sealed, intruder), RecordKeyMismatchError);
  });

  it("rejects a missing signature", async () => {
    const keyPair = generateKeyPair();
    const solved = await solveNodeRecordPow(sampleNodeRecord(keyPair), 4);
    assert.equal(verifyNodeRecord(solved), false);
    assert.equal(findNodeRecordProblem(solved), "signature is missing");
  });

  it("rejects a proof of work below the required difficulty", async () => {
    const keyPair = generateKeyPair();
    const sealed = await sealNodeRecord(sampleNodeRecord(keyPair), keyPair, 2);
    assert.ok(verifyNodeRecord(sealed));
    assert.equal(verifyNodeRecordPow(sealed, 16), false);
    assert.match(
      findNodeRecordProblem(sealed, { minPowDifficulty: 16 }) ?? "",
      /difficulty 2 is below the required 16/,
    );
  });

  it("solving clears an old signature, so a stale one never rides along", async () => {
    const keyPair = generateKeyPair();
    const sealed = await sealNodeRecord(sampleNodeRecord(keyPair), keyPair, 4);
    const bumped = await solveNodeRecordPow({ ...sealed, sequence: sealed.sequence + 1n }, 4);
    assert.equal(bumped.signature.length, 0);
    assert.ok(verifyNodeRecord(signNodeRecord(bumped, keyPair)));
  });

  it("keeps unknown fields from a newer schema inside the signed bytes", async () => {
    const keyPair = generateKeyPair();
    const sealed = await sealNodeRecord(sampleNodeRecord(keyPair), keyPair, 4);
    // A newer node adds field 40 (a string) and signs it.
    const extra = Uint8Array.of(0xc2, 0x02, 3, 0x61, 0x62, 0x63);
    const withExtra = fromBinary(
      NodeRecordSchema,
      concat(toBinary(NodeRecordSchema, { ...sealed, signature: new Uint8Array(0) }), extra),
    );
    assert.equal(withExtra.$unknown?.length, 1);
    const signedByNewer = signNodeRecord(withExtra, keyPair);
    const seenByOlder = fromBinary(NodeRecordSchema, toBinary(NodeRecordSchema, signedByNewer));
    assert.ok(verifyNodeRecord(seenByOlder));
    const stripped = fromBinary(
      NodeRecordSchema,
      toBinary(NodeRecordSchema, signedByNewer, { writeUnknownFields: false }),
    );
    assert.equal(verifyNodeRecord(stripped), false);
  });
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
