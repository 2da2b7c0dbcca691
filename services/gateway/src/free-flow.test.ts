// The gateway on a free subnet (no registry configured), in this process on port 0, driven from
// the outside: clients over GatewayClientService, compute nodes played by the test over
// GatewayComputeService with keys of their own. Each test uses its own model id, so nodes of one
// test never take another's tasks.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { verifyAccessToken } from "@tessera/identity/access-token";
import { generateKeyPair } from "@tessera/identity/keys";
import { JSON_MEDIA_TYPE, RAW_TENSORS_MEDIA_TYPE } from "@tessera/ml/tensors";
import { GatewayClientService } from "@tessera/proto/tessera/gateway/v1/gateway_client_service_pb.js";
import { InferenceTaskState } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { PROTOCOL_VERSION } from "./protocol-version.js";
import {
  affineInput,
  affineModel,
  eventually,
  floatsOf,
  openClient,
  startTestGateway,
  type TestGateway,
  TestNode,
} from "./test-support.js";

async function rejectsWith(promise: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(promise, (error: unknown) => {
    const e = ConnectError.from(error);
    assert.equal(e.code, code, `${Code[e.code]}: ${e.rawMessage}`);
    if (message !== undefined) assert.match(e.rawMessage, message);
    return true;
  });
}

describe("gateway on a free subnet", () => {
  let gateway: TestGateway;
  const client = generateKeyPair();
  const other = generateKeyPair();
  const nodes: TestNode[] = [];
  const sessions: Http2SessionManager[] = [];

  before(async () => {
    gateway = await startTestGateway({ MAX_INPUT_BYTES: "4096", TOKEN_TTL_MS: "60000" });
  });
  after(async () => {
    for (const node of nodes) await node.stop();
    for (const session of sessions) session.abort();
    await gateway.close();
  });

  /** A registered, beating node hosting `modelId`, with its stream open unless told otherwise. */
  async function node(modelId: string, opts: { stream?: boolean; batch?: number } = {}) {
    const n = new TestNode(gateway, { models: [affineModel(modelId)] });
    nodes.push(n);
    const registered = await n.register();
    assert.deepEqual(registered.acceptedModelIds, [modelId]);
    n.startHeartbeats(100);
    if (opts.stream !== false) n.openStream(opts.batch ?? 1);
    return n;
  }

  function submit(requestId: string, modelId: string, rows: number[][] = [[1, 2]], extra = {}) {
    const { bytes, specs } = affineInput(rows);
    return gateway.client(client).submitInferenceTask({
      protocolVersion: PROTOCOL_VERSION,
      requestId,
      modelId,
      input: bytes,
      inputMediaType: RAW_TENSORS_MEDIA_TYPE,
      inputTensors: specs,
      clientAddress: client.address,
      ...extra,
    });
  }

  async function statusOf(requestId: string) {
    return gateway.client(client).getTaskStatus({ protocolVersion: PROTOCOL_VERSION, requestId });
  }

  async function finished(requestId: string) {
    return eventually(
      async () => {
        const answer = await statusOf(requestId);
        const state = answer.status?.state ?? InferenceTaskState.UNSPECIFIED;
        return state >= InferenceTaskState.COMPLETED ? answer : undefined;
      },
      10_000,
      `task ${requestId} to finish`,
    );
  }

  test("a free task runs end to end and the subscriber sees every state and the result", async () => {
    await node("e2e");
    const submitted = await submit("e2e-1", "e2e", [
      [1, 2],
      [3, 4],
    ]);
    assert.equal(submitted.status?.state, InferenceTaskState.QUEUED);
    assert.equal(submitted.status?.paymentStatus?.required, false);

    const states: InferenceTaskState[] = [];
    let output: number[] = [];
    for await (const update of gateway.client(client).subscribeToTaskUpdates({
      protocolVersion: PROTOCOL_VERSION,
      requestId: "e2e-1",
    })) {
      states.push(update.status?.state ?? InferenceTaskState.UNSPECIFIED);
      if (update.result !== undefined) output = floatsOf(update.result.output);
    }
    assert.equal(states.at(-1), InferenceTaskState.COMPLETED);
    assert.deepEqual(output, [3, 5, 7, 9]);
    const done = await statusOf("e2e-1");
    assert.deepEqual(floatsOf(done.result?.output ?? new Uint8Array()), [3, 5, 7, 9]);
    assert.notEqual(done.status?.assignedComputeNodeAddress, "");
  });

  test("JSON input is accepted for a model with one input", async () => {
    await node("json");
    const answer = await gateway.client(client).submitInferenceTask({
      protocolVersion: PROTOCOL_VERSION,
      requestId: "json-1",
      modelId: "json",
      input: new TextEncoder().encode(JSON.stringify([[0.5, 1]])),
      inputMediaType: JSON_MEDIA_TYPE,
      clientAddress: client.address,
    });
    assert.equal(answer.status?.state, InferenceTaskState.QUEUED);
    const done = await finished("json-1");
    assert.equal(done.status?.state, InferenceTaskState.COMPLETED);
    assert.deepEqual(floatsOf(done.result?.output ?? new Uint8Array()), [2, 3]);
  });

  test("queued tasks for one node and model go out batched up to the stream's max_batch_size", async () => {
    const n = await node("batch", { stream: false });
    for (const id of ["b-1", "b-2", "b-3"]) await submit(id, "batch");
    n.openStream(2);
    for (const id of ["b-1", "b-2", "b-3"]) {
      assert.equal((await finished(id)).status?.state, InferenceTaskState.COMPLETED);
    }
    assert.deepEqual(n.deliveries, [["b-1", "b-2"], ["b-3"]]);
  });

  test("submission is idempotent on request id and body", async () => {
    await node("idem", { stream: false });
    const first = await submit("idem-1", "idem");
    const again = await submit("idem-1", "idem");
    assert.equal(again.status?.state, first.status?.state);
    assert.deepEqual(again.status?.createdAt, first.status?.createdAt);
    await rejectsWith(submit("idem-1", "idem", [[9, 9]]), Code.AlreadyExists);
  });

  test("results are idempotent: the same again is accepted, a different one is refused", async () => {
    const n = await node("result-idem", { stream: false });
    n.answer = "ignore";
    n.openStream();
    await submit("ri-1", "result-idem");
    const task = await eventually(() => n.task("ri-1"), 5000, "delivery");
    const first = await n.respond(task);
    assert.equal(first.state, InferenceTaskState.COMPLETED);
    assert.equal((await n.respond(task)).state, InferenceTaskState.COMPLETED);
    await rejectsWith(n.respond(task, "compute", 3), Code.AlreadyExists);
  });

  test("only the task's client sees or cancels it; other callers are refused", async () => {
    await node("perm", { stream: false });
    await submit("perm-1", "perm");
    const stranger = gateway.client(other);
    await rejectsWith(
      stranger.getTaskStatus({ protocolVersion: PROTOCOL_VERSION, requestId: "perm-1" }),
      Code.PermissionDenied,
    );
    await rejectsWith(
      stranger.cancelTask({ protocolVersion: PROTOCOL_VERSION, requestId: "perm-1" }),
      Code.PermissionDenied,
    );
    await rejectsWith(
      (async () => {
        for await (const _ of stranger.subscribeToTaskUpdates({
          protocolVersion: PROTOCOL_VERSION,
          requestId: "perm-1",
        })) {
          assert.fail("a stranger got an update");
        }
      })(),
      Code.PermissionDenied,
    );
    const unsigned = openClient(GatewayClientService, gateway.url, sessions);
    await rejectsWith(
      unsigned.getTaskStatus({ protocolVersion: PROTOCOL_VERSION, requestId: "perm-1" }),
      Code.Unauthenticated,
    );
    // A client cannot submit in another's name.
    const { bytes, specs } = affineInput([[1, 1]]);
    await rejectsWith(
      stranger.submitInferenceTask({
        protocolVersion: PROTOCOL_VERSION,
        requestId: "perm-2",
        modelId: "perm",
        input: bytes,
        inputMediaType: RAW_TENSORS_MEDIA_TYPE,
        inputTensors: specs,
        clientAddress: client.address,
      }),
      Code.PermissionDenied,
    );
  });

  test("nodes may only speak for themselves and their own tasks", async () => {
    const a = await node("node-perm", { stream: false });
    a.answer = "ignore";
    a.openStream();
    const b = await node("node-perm-other");
    await submit("np-1", "node-perm");
    const task = await eventually(() => a.task("np-1"), 5000, "delivery");
    // b signs a valid completion of its own for a task assigned to a
    const forged = await b.result(task, "compute");
    await rejectsWith(
      b.computeClient.submitResult({ protocolVersion: PROTOCOL_VERSION, result: forged }),
      Code.FailedPrecondition,
    );
    await rejectsWith(
      b.computeClient.getTask({ protocolVersion: PROTOCOL_VERSION, requestId: "np-1" }),
      Code.PermissionDenied,
    );
    const got = await a.computeClient.getTask({
      protocolVersion: PROTOCOL_VERSION,
      requestId: "np-1",
    });
    assert.equal(got.task?.assignedComputeNodeAddress, a.address);
    // a result whose hash is not the output's
    const bad = await a.result(task, "compute");
    await rejectsWith(
      a.computeClient.submitResult({
        protocolVersion: PROTOCOL_VERSION,
        result: { ...bad, output: new Uint8Array(bad.output.length) },
      }),
      Code.InvalidArgument,
      /result_hash/,
    );
    await rejectsWith(
      b.computeClient.updateHeartbeat({
        protocolVersion: PROTOCOL_VERSION,
        nodeAddress: a.address,
      }),
      Code.PermissionDenied,
    );
    const stranger = new TestNode(gateway);
    await rejectsWith(
      stranger.computeClient.updateHeartbeat({
        protocolVersion: PROTOCOL_VERSION,
        nodeAddress: stranger.address,
      }),
      Code.NotFound,
    );
  });

  test("bad submissions get the right codes and nothing is kept", async () => {
    await node("bad");
    await rejectsWith(submit("bad-1", "no-such-model"), Code.NotFound);
    await rejectsWith(submit("bad id!", "bad"), Code.InvalidArgument, /request_id/);
    const big = Array.from({ length: 600 }, () => [1, 2]); // 4800 bytes > 4096
    await rejectsWith(submit("bad-2", "bad", big), Code.ResourceExhausted, /MAX_INPUT_BYTES/);
    const { bytes, specs } = affineInput([[1, 2]]);
    const base = {
      protocolVersion: PROTOCOL_VERSION,
      modelId: "bad",
      clientAddress: client.address,
    };
    const c = gateway.client(client);
    await rejectsWith(
      c.submitInferenceTask({
        ...base,
        requestId: "bad-3",
        input: bytes.slice(0, 4),
        inputMediaType: RAW_TENSORS_MEDIA_TYPE,
        inputTensors: specs,
      }),
      Code.InvalidArgument,
    );
    await rejectsWith(
      c.submitInferenceTask({
        ...base,
        requestId: "bad-4",
        input: bytes,
        inputMediaType: RAW_TENSORS_MEDIA_TYPE,
        inputTensors: [{ name: "x", shape: [1n, 2n], dtype: "int32" }],
      }),
      Code.InvalidArgument,
      /dtype/,
    );
    await rejectsWith(
      c.submitInferenceTask({
        ...base,
        requestId: "bad-5",
        input: new TextEncoder().encode("hello"),
        inputMediaType: "text/plain",
      }),
      Code.InvalidArgument,
      /media/,
    );
    await rejectsWith(
      c.submitInferenceTask({
        ...base,
        requestId: "bad-6",
        input: bytes,
        inputMediaType: RAW_TENSORS_MEDIA_TYPE,
        inputTensors: [{ name: "x", shape: [1n, 3n], dtype: "float32" }],
      }),
      Code.InvalidArgument,
    );
    for (const id of ["bad-1", "bad-2", "bad-3", "bad-4", "bad-5", "bad-6"]) {
      await rejectsWith(statusOf(id), Code.NotFound);
    }
  });

  test("a node that vanishes loses its task to another node", async () => {
    const a = await node("vanish", { stream: false });
    a.answer = "ignore";
    a.openStream();
    await submit("v-1", "vanish");
    const task = await eventually(() => a.task("v-1"), 5000, "delivery to a");
    await a.stop();
    const b = await node("vanish");
    const done = await finished("v-1");
    assert.equal(done.status?.state, InferenceTaskState.COMPLETED);
    assert.equal(done.status?.assignedComputeNodeAddress, b.address);
    // a comes back too late: its result is refused and it is told to stop the task
    await rejectsWith(a.respond(task), Code.FailedPrecondition);
    const beat = await a.computeClient.updateHeartbeat({
      protocolVersion: PROTOCOL_VERSION,
      nodeAddress: a.address,
      load: { activeJobIds: ["v-1"] },
    });
    assert.deepEqual(beat.cancelledRequestIds, ["v-1"]);
  });

  test("a FAILED run is re-routed once to another node", async () => {
    const a = await node("fails", { stream: false });
    a.answer = "ignore";
    a.openStream();
    await submit("f-1", "fails");
    const task = await eventually(() => a.task("f-1"), 5000, "delivery to a");
    const b = await node("fails", { stream: false });
    b.answer = "fail";
    b.openStream();
    const failed = await a.respond(task, "fail");
    assert.equal(failed.state, InferenceTaskState.QUEUED);
    const done = await finished("f-1");
    assert.equal(done.status?.state, InferenceTaskState.FAILED);
    assert.match(done.status?.errorMessage ?? "", /failed on purpose/);
    assert.ok(b.task("f-1"), "the task went to the second node");
  });

  test("cancel stops a running task and the node hears it on its next heartbeat", async () => {
    const n = await node("cancel", { stream: false });
    n.answer = "ignore";
    n.openStream();
    await submit("c-1", "cancel");
    await eventually(() => n.task("c-1"), 5000, "delivery");
    const c = gateway.client(client);
    const cancelled = await c.cancelTask({
      protocolVersion: PROTOCOL_VERSION,
      requestId: "c-1",
      reason: "changed my mind",
    });
    assert.equal(cancelled.status?.state, InferenceTaskState.CANCELLED);
    const again = await c.cancelTask({ protocolVersion: PROTOCOL_VERSION, requestId: "c-1" });
    assert.equal(again.status?.state, InferenceTaskState.CANCELLED);
    await eventually(() => (n.cancelled.has("c-1") ? true : undefined), 5000, "cancel notice");
    await rejectsWith(n.respond(n.task("c-1") ?? assert.fail()), Code.FailedPrecondition);
  });

  test("a task nobody runs fails at its deadline", async () => {
    await node("deadline", { stream: false });
    await submit("d-1", "deadline", [[1, 1]], { timeoutMs: 300n });
    const done = await finished("d-1");
    assert.equal(done.status?.state, InferenceTaskState.FAILED);
    assert.match(done.status?.errorMessage ?? "", /deadline/);
  });

  test("ListModels pages through the served models with their online nodes", async () => {
    await node("list-a");
    await node("list-b");
    const open = openClient(GatewayClientService, gateway.url, sessions);
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await open.listModels({
        protocolVersion: PROTOCOL_VERSION,
        pageSize: 1,
        pageToken,
        availableOnly: true,
      });
      assert.ok(page.models.length <= 1);
      for (const m of page.models) {
        seen.push(m.descriptor?.modelId ?? "");
        assert.ok(m.onlineNodeCount >= 1);
        assert.equal(m.paymentRequired, false);
      }
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    assert.ok(seen.includes("list-a") && seen.includes("list-b"), seen.join());
    assert.deepEqual(seen, [...seen].sort());
    const first = await open.listModels({ protocolVersion: PROTOCOL_VERSION, pageSize: 1 });
    await rejectsWith(
      open.listModels({
        protocolVersion: PROTOCOL_VERSION,
        pageSize: 1,
        pageToken: first.nextPageToken,
        category: "vision",
      }),
      Code.InvalidArgument,
    );
  });

  test("RequestDirectAccess issues a token for an online node hosting the model", async () => {
    const n = await node("direct");
    const grant = await gateway.client(client).requestDirectAccess({
      protocolVersion: PROTOCOL_VERSION,
      requestId: "session-1",
      modelId: "direct",
      clientAddress: client.address,
    });
    assert.equal(grant.nodeAddress, n.address);
    assert.deepEqual(grant.nodePublicKey, n.keyPair.publicKey);
    assert.equal(grant.model?.modelId, "direct");
    assert.equal(grant.endpoint?.url, "http://127.0.0.1:9");
    const verified = verifyAccessToken(grant.accessToken, {
      nodeAddress: n.address,
      clientAddress: client.address,
      modelId: "direct",
      jobId: "session-1",
      trustedIssuers: [gateway.address],
    });
    assert.equal(verified.issuerAddress, gateway.address);
    await rejectsWith(
      gateway.client(client).requestDirectAccess({
        protocolVersion: PROTOCOL_VERSION,
        requestId: "session-2",
        modelId: "nothing-hosts-this",
        clientAddress: client.address,
      }),
      Code.NotFound,
    );
  });

  test("RegisterComputeNode checks the record and the caller", async () => {
    const n = new TestNode(gateway, { models: [affineModel("reg")] });
    const record = await n.record();
    const impostor = new TestNode(gateway);
    await rejectsWith(
      impostor.computeClient.registerComputeNode({ protocolVersion: PROTOCOL_VERSION, record }),
      Code.PermissionDenied,
    );
    await rejectsWith(
      n.computeClient.registerComputeNode({
        protocolVersion: PROTOCOL_VERSION,
        record: { ...record, name: "tampered" },
      }),
      Code.Unauthenticated,
    );
    await rejectsWith(
      n.computeClient
        .receiveTask({ protocolVersion: PROTOCOL_VERSION, nodeAddress: n.address })
        [Symbol.asyncIterator]()
        .next(),
      Code.FailedPrecondition,
    );
    const ok = await n.computeClient.registerComputeNode({
      protocolVersion: PROTOCOL_VERSION,
      record,
    });
    assert.deepEqual(ok.acceptedModelIds, ["reg"]);
    assert.equal(ok.heartbeatIntervalMs, 200);
  });
});
