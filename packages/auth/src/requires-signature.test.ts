import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Health } from "@tessera/proto/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@tessera/proto/grpc/reflection/v1/reflection_pb.js";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { RegistryService } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { WalletService } from "@tessera/proto/tessera/wallet/v1/wallet_service_pb.js";
import { requiresSignatureByDefault } from "./requires-signature.js";

describe("which RPCs must be signed by default", () => {
  it("every method not marked NO_SIDE_EFFECTS, streams included", () => {
    assert.equal(requiresSignatureByDefault(WalletService.method.transfer), true);
    assert.equal(requiresSignatureByDefault(WalletService.method.faucet), true);
    assert.equal(requiresSignatureByDefault(RegistryService.method.registerNode), true);
    assert.equal(requiresSignatureByDefault(RegistryService.method.discoverNodes), true);
    assert.equal(requiresSignatureByDefault(ArtifactService.method.uploadChunks), true);
  });

  it("not the reads marked NO_SIDE_EFFECTS", () => {
    assert.equal(requiresSignatureByDefault(WalletService.method.getBalance), false);
    assert.equal(requiresSignatureByDefault(RegistryService.method.getNode), false);
    assert.equal(requiresSignatureByDefault(RegistryService.method.listValidators), false);
  });

  it("not gRPC health and reflection, which probes and buf curl call unsigned", () => {
    assert.equal(requiresSignatureByDefault(Health.method.check), false);
    assert.equal(requiresSignatureByDefault(Health.method.watch), false);
    assert.equal(requiresSignatureByDefault(ServerReflection.method.serverReflectionInfo), false);
  });
});
