import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { generateKeyPair } from "@tessera/identity/keys";
import {
  type ListValidatorsRequest,
  RegistryService,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import { createRegistryValidatorSet } from "./validator-set.js";

const addresses = Array.from({ length: 5 }, () => generateKeyPair().address).sort();

/** A registry that lists `addresses` two per page and counts the calls. */
function fakeRegistry(requiredSignatures = 3, fail = false) {
  const calls: ListValidatorsRequest[] = [];
  const transport = createRouterTransport((router) =>
    router.service(RegistryService, {
      listValidators(req) {
        calls.push(req);
        if (fail) throw new ConnectError("registry is down", Code.Unavailable);
        const start = req.pageToken === "" ? 0 : Number(req.pageToken);
        const end = Math.min(start + 2, addresses.length);
        return {
          validators: addresses.slice(start, end).map((address) => ({ address })),
          nextPageToken: end < addresses.length ? String(end) : "",
          requiredSignatures,
        };
      },
    }),
  );
  return { transport, calls };
}

test("reads every page of ACTIVE validators with the registry's quorum, once per cache period", async () => {
  const { transport, calls } = fakeRegistry();
  let now = 0;
  const source = createRegistryValidatorSet({
    registryUrl: "http://registry.invalid",
    transport,
    cacheMs: 1000,
    nowMs: () => now,
  });
  const [a, b] = await Promise.all([source.getValidatorSet(), source.getValidatorSet()]);
  assert.deepEqual(a, { addresses, quorum: 3 });
  assert.equal(a, b, "concurrent readers share one fetch");
  assert.equal(calls.length, 3, "three pages of two");
  assert.ok(calls.every((call) => call.status === ValidatorStatus.ACTIVE));
  now = 999;
  await source.getValidatorSet();
  assert.equal(calls.length, 3, "served from the cache");
  now = 1000;
  await source.getValidatorSet();
  assert.equal(calls.length, 6, "read again after the cache period");
  source.close();
});

test("an unreachable registry or one without a quorum rejects instead of guessing", async () => {
  const down = createRegistryValidatorSet({
    registryUrl: "http://registry.invalid",
    transport: fakeRegistry(3, true).transport,
  });
  await assert.rejects(
    down.getValidatorSet(),
    /cannot read the validator set from the registry: registry is down/,
  );
  const noQuorum = createRegistryValidatorSet({
    registryUrl: "http://registry.invalid",
    transport: fakeRegistry(0).transport,
  });
  await assert.rejects(noQuorum.getValidatorSet(), /no required_signatures/);
});
