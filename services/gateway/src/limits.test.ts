// A gateway with a pinned model catalog (examples/models/catalog.json) and tight limits, in this
// process on port 0: pinned models are listed before any node serves them, a node's copy with
// another digest is not accepted, and the in-flight limit refuses work with RESOURCE_EXHAUSTED.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { generateKeyPair } from "@tessera/identity/keys";
import { RAW_TENSORS_MEDIA_TYPE } from "@tessera/ml/tensors";
import { InferenceTaskState } from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { PROTOCOL_VERSION } from "./protocol-version.js";
import {
  affineInput,
  affineModel,
  startTestGateway,
  type TestGateway,
  TestNode,
} from "./test-support.js";

const catalog = fileURLToPath(new URL("../../../examples/models/catalog.json", import.meta.url));

describe("gateway with a pinned catalog and tight limits", () => {
  let gateway: TestGateway;
  const client = generateKeyPair();
  const nodes: TestNode[] = [];

  before(async () => {
    gateway = await startTestGateway({ MODELS_FILE: catalog, MAX_TASKS_IN_FLIGHT: "1" });
  });
  after(async () => {
    for (const node of nodes) await node.stop();
    await gateway.close();
  });

  test("pinned models are listed with no node, and a node's copy with another digest is refused", async () => {
    const listed = await gateway.client(client).listModels({ protocolVersion: PROTOCOL_VERSION });
    const pinned = listed.models.find((m) => m.descriptor?.modelId === "blobs-classifier");
    assert.ok(pinned, "the pinned model is listed");
    assert.equal(pinned.onlineNodeCount, 0);
    const available = await gateway
      .client(client)
      .listModels({ protocolVersion: PROTOCOL_VERSION, availableOnly: true });
    assert.equal(available.models.length, 0);

    const impostor = affineModel("blobs-classifier");
    impostor.content = {
      $typeName: "tessera.common.v1.ContentRef",
      digest: `sha256:${"0".repeat(64)}`,
      sizeBytes: 10n,
      uri: "file:///elsewhere.onnx",
      mediaType: "application/onnx",
    };
    const node = new TestNode(gateway, { models: [impostor, affineModel("own-model")] });
    nodes.push(node);
    const registered = await node.register();
    assert.deepEqual(registered.acceptedModelIds, ["own-model"]);
  });

  test("work beyond MAX_TASKS_IN_FLIGHT is refused with resource_exhausted", async () => {
    const node = new TestNode(gateway, { models: [affineModel("limited")] });
    nodes.push(node);
    await node.register();
    node.startHeartbeats(100);
    const submit = (requestId: string) => {
      const { bytes, specs } = affineInput([[1, 2]]);
      return gateway.client(client).submitInferenceTask({
        protocolVersion: PROTOCOL_VERSION,
        requestId,
        modelId: "limited",
        input: bytes,
        inputMediaType: RAW_TENSORS_MEDIA_TYPE,
        inputTensors: specs,
        clientAddress: client.address,
      });
    };
    assert.equal((await submit("lim-1")).status?.state, InferenceTaskState.QUEUED);
    await assert.rejects(submit("lim-2"), (error: unknown) => {
      assert.equal(ConnectError.from(error).code, Code.ResourceExhausted);
      assert.match(ConnectError.from(error).rawMessage, /MAX_TASKS_IN_FLIGHT/);
      return true;
    });
    // the same request again is not new work: it answers the task
    assert.equal((await submit("lim-1")).status?.state, InferenceTaskState.QUEUED);
  });
});

describe("gateway whose registry cannot be reached", () => {
  let gateway: TestGateway;
  const client = generateKeyPair();

  before(async () => {
    gateway = await startTestGateway({
      MODELS_FILE: catalog,
      REGISTRY_URL: "http://127.0.0.1:9",
      REGISTRY_ADDRESS: generateKeyPair().address,
      WALLET_URL: "http://127.0.0.1:9",
      WALLET_ADDRESS: generateKeyPair().address,
      PEER_TIMEOUT_MS: "1000",
    });
  });
  after(() => gateway.close());

  test("submissions and registrations answer unavailable and nothing is kept", async () => {
    const { bytes, specs } = affineInput([[1, 2]], "input");
    const c = gateway.client(client);
    await assert.rejects(
      c.submitInferenceTask({
        protocolVersion: PROTOCOL_VERSION,
        requestId: "unreachable-1",
        modelId: "blobs-classifier",
        input: bytes,
        inputMediaType: RAW_TENSORS_MEDIA_TYPE,
        inputTensors: specs,
        clientAddress: client.address,
      }),
      (error: unknown) => ConnectError.from(error).code === Code.Unavailable,
    );
    await assert.rejects(
      c.getTaskStatus({ protocolVersion: PROTOCOL_VERSION, requestId: "unreachable-1" }),
      (error: unknown) => ConnectError.from(error).code === Code.NotFound,
    );
    const node = new TestNode(gateway);
    await assert.rejects(node.register(), (error: unknown) => {
      return ConnectError.from(error).code === Code.Unavailable;
    });
  });
});
