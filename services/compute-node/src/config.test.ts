import assert from "node:assert/strict";
import { test } from "node:test";
import { generateKeyPair } from "@tessera/identity/keys";
import { ConfigError, parseConfig } from "@tessera/runtime";
import { computeNodeConfigSpec, serverMessageLimitBytes, trustedTokenIssuers } from "./config.js";

test("defaults: two slots, registry difficulty, no job server, CPU price 0", () => {
  const config = parseConfig(computeNodeConfigSpec, {});
  assert.equal(config.MAX_CONCURRENT_JOBS, 2);
  assert.equal(config.POW_DIFFICULTY, 16);
  assert.equal(config.JOB_SERVER_ADDRESS, "");
  assert.equal(config.PRICE_PER_HOUR, 0n);
  assert.equal(config.PUBLIC_URL, "");
  assert.deepEqual(config.LOCAL_DATA_DIRS, []);
});

test("peers' addresses, price and public URL are parsed", () => {
  const jobServer = generateKeyPair().address;
  const config = parseConfig(computeNodeConfigSpec, {
    JOB_SERVER_ADDRESS: jobServer,
    PRICE_PER_HOUR: "2500000",
    PUBLIC_URL: "https://node.example/",
    LOCAL_DATA_DIRS: "/data/a, /data/b",
  });
  assert.equal(config.JOB_SERVER_ADDRESS, jobServer);
  assert.equal(config.PRICE_PER_HOUR, 2_500_000n);
  assert.equal(config.PUBLIC_URL, "https://node.example");
  assert.deepEqual(config.LOCAL_DATA_DIRS, ["/data/a", "/data/b"]);
});

test("every bad variable is named at once", () => {
  assert.throws(
    () =>
      parseConfig(computeNodeConfigSpec, {
        JOB_SERVER_ADDRESS: "tsr1notanaddress",
        PRICE_PER_HOUR: "1.5",
        PUBLIC_URL: "node:7004",
        MAX_CONCURRENT_JOBS: "0",
      }),
    (error: unknown) =>
      error instanceof ConfigError &&
      ["JOB_SERVER_ADDRESS", "PRICE_PER_HOUR", "PUBLIC_URL", "MAX_CONCURRENT_JOBS"].every((name) =>
        error.problems.some((problem) => problem.startsWith(`${name}:`)),
      ),
  );
});

test("token issuers default to the gateway and the job server; an explicit list replaces them", () => {
  const gateway = generateKeyPair().address;
  const jobServer = generateKeyPair().address;
  const other = generateKeyPair().address;
  assert.deepEqual(trustedTokenIssuers(parseConfig(computeNodeConfigSpec, {})), []);
  assert.deepEqual(
    trustedTokenIssuers(
      parseConfig(computeNodeConfigSpec, {
        GATEWAY_ADDRESS: gateway,
        JOB_SERVER_ADDRESS: jobServer,
      }),
    ),
    [gateway, jobServer],
  );
  assert.deepEqual(
    trustedTokenIssuers(
      parseConfig(computeNodeConfigSpec, {
        GATEWAY_ADDRESS: gateway,
        TRUSTED_TOKEN_ISSUERS: ` ${other} `,
      }),
    ),
    [other],
  );
  assert.throws(
    () => parseConfig(computeNodeConfigSpec, { TRUSTED_TOKEN_ISSUERS: `${other},tsr1nope` }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.problems.some((problem) => /^TRUSTED_TOKEN_ISSUERS:.*tsr1nope/.test(problem)),
  );
});

test("the message limit lets a request of twice MAX_TENSOR_BYTES reach the node's own check", () => {
  const defaults = parseConfig(computeNodeConfigSpec, {});
  assert.equal(defaults.MAX_TENSOR_BYTES, 16 * 1024 * 1024);
  assert.equal(defaults.MODELS_FILE, "");
  assert.equal(serverMessageLimitBytes(defaults), 32 * 1024 * 1024 + 64 * 1024);
  const large = parseConfig(computeNodeConfigSpec, {
    MAX_TENSOR_BYTES: "1024",
    MAX_MESSAGE_BYTES: String(8 << 20),
  });
  assert.equal(serverMessageLimitBytes(large), 8 << 20);
});
