import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { EscrowSchema, EscrowState } from "@tessera/proto/tessera/wallet/v1/wallet_pb.js";
import type { Task } from "../tasks/task.js";
import { escrowProblem, treeTotal } from "./escrow-check.js";

const task = {
  requestId: "r-1",
  clientAddress: "client",
  amountDue: 100n,
  deadlineMs: 10_000,
} as Task;
const expect = { gatewayAddress: "gateway", marginMs: 5000 };
const good = create(EscrowSchema, {
  escrowId: "e-1",
  jobId: "r-1",
  payerAddress: "client",
  amount: "100",
  arbiterAddress: "gateway",
  expiresAt: timestampFromMs(15_000),
  state: EscrowState.HELD,
});

test("an escrow that holds the due amount for the task, long enough, pays for it", () => {
  assert.equal(escrowProblem(good, task, expect), undefined);
});

test("each way an escrow can fail to pay is named", () => {
  const cases: [Partial<typeof good>, RegExp][] = [
    [{ state: EscrowState.RELEASED }, /not held/],
    [{ arbiterAddress: "someone" }, /arbiter/],
    [{ payerAddress: "stranger" }, /paid by/],
    [{ jobId: "r-2" }, /job/],
    [{ amount: "99" }, /less than the 100 due/],
    [{ expiresAt: timestampFromMs(14_999) }, /expires before/],
  ];
  for (const [change, message] of cases) {
    assert.match(escrowProblem({ ...good, ...change }, task, expect) ?? "", message);
  }
});

test("a tree's total is the sum of its four amounts", () => {
  assert.equal(
    treeTotal({
      computeAmount: "70",
      gatewayAmount: "10",
      validatorAmount: "15",
      treasuryAmount: "5",
    }),
    100n,
  );
});
