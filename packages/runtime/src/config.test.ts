import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  bool,
  ConfigError,
  describeConfig,
  int,
  oneOf,
  parseConfig,
  port,
  serverConfigSpec,
  str,
  url,
} from "./config.js";
import { serverOptionsFromConfig } from "./server.js";

const spec = {
  ...serverConfigSpec,
  PORT: port({ default: 8080 }),
  WALLET_URL: url({ doc: "The wallet service." }),
  WORKERS: int({ default: 2, min: 1, max: 64 }),
  DRY_RUN: bool({ default: false }),
  MODE: oneOf(["fast", "safe"] as const, { default: "safe" }),
  NAME: str(),
};

describe("parseConfig", () => {
  it("reports every missing or bad variable at once", () => {
    const env = { PORT: "abc", WORKERS: "0", DRY_RUN: "maybe", MODE: "turbo", WALLET_URL: "" };
    assert.throws(
      () => parseConfig(spec, env),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, [
          'PORT: must be an integer in 0..65535, got "abc"',
          "WALLET_URL: missing",
          'WORKERS: must be an integer in 1..64, got "0"',
          'DRY_RUN: must be true or false, got "maybe"',
          'MODE: must be one of fast, safe, got "turbo"',
          "NAME: missing",
        ]);
        return true;
      },
    );
  });

  it("applies defaults, parses values and freezes the result", () => {
    const config = parseConfig(spec, {
      WALLET_URL: "http://wallet:8080/",
      NAME: "n1",
      DRY_RUN: "yes",
      CORS_ORIGINS: "https://a.example, https://b.example",
    });
    assert.equal(config.PORT, 8080);
    assert.equal(config.WALLET_URL, "http://wallet:8080");
    assert.equal(config.DRY_RUN, true);
    assert.equal(config.MAX_MESSAGE_BYTES, 4_194_304);
    assert.ok(Object.isFrozen(config));
    assert.deepEqual(serverOptionsFromConfig(config), {
      host: "0.0.0.0",
      port: 8080,
      limits: { maxMessageBytes: 4_194_304, defaultDeadlineMs: 30_000, maxDeadlineMs: 300_000 },
      corsOrigins: ["https://a.example", "https://b.example"],
      shutdownGraceMs: 10_000,
    });
  });

  it("rejects a URL that is not http(s)", () => {
    assert.throws(
      () => parseConfig({ U: url() }, { U: "ftp://x" }),
      /U: must be an http\(s\) URL, got "ftp:\/\/x"/,
    );
  });

  it("describes the variables as a markdown table", () => {
    const table = describeConfig(spec);
    assert.match(table, /^\| Variable \| Type \| Default \| Description \|/);
    assert.match(
      table,
      /\| `WALLET_URL` \| http\(s\) URL \| \(required\) \| The wallet service\. \|/,
    );
    assert.match(table, /\| `MAX_MESSAGE_BYTES` \| integer >= 1 \| `4194304` \|/);
  });
});
