import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LogLevel } from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  MAX_LOGS_PER_REPORT,
  type ProgressReport,
  ProgressReporter,
  truncateUtf8,
} from "./progress-reporter.js";

describe("progress reporter", () => {
  test("merges samples between reports: latest progress and metrics, every log line", async () => {
    const sent: ProgressReport[] = [];
    let release: (() => void) | undefined;
    const reporter = new ProgressReporter({
      minIntervalMs: 0,
      send: async (report) => {
        sent.push(report);
        // Hold the first report so the next samples pile up behind it.
        if (sent.length === 1) await new Promise<void>((resolve) => (release = resolve));
        return true;
      },
      onStop: () => assert.fail("not stopped"),
    });
    reporter.push({ progress: 0.1, epoch: 1, metrics: { "train/loss": 0.9 } });
    while (release === undefined) await new Promise((resolve) => setTimeout(resolve, 1));
    reporter.push({
      progress: 0.2,
      epoch: 2,
      metrics: { "train/loss": 0.8 },
      log: { level: "info", message: "a" },
    });
    reporter.push({
      progress: 0.3,
      metrics: { "train/accuracy": 0.5 },
      log: { level: "warning", message: "b" },
    });
    release?.();
    await reporter.flush();
    assert.equal(sent.length, 2);
    const merged = sent[1];
    assert.equal(merged?.progress, 0.3);
    assert.equal(merged?.currentEpoch, 2);
    assert.deepEqual(merged?.metrics, { "train/loss": 0.8, "train/accuracy": 0.5 });
    assert.deepEqual(
      merged?.logs?.map((line) => [line.level, line.message]),
      [
        [LogLevel.INFO, "a"],
        [LogLevel.WARNING, "b"],
      ],
    );
  });

  test("sends at most 100 log lines per report, the rest in the next", async () => {
    const sent: ProgressReport[] = [];
    const reporter = new ProgressReporter({
      minIntervalMs: 0,
      send: async (report) => {
        sent.push(report);
        return true;
      },
      onStop: () => assert.fail("not stopped"),
    });
    for (let i = 0; i < 150; i++)
      reporter.push({ progress: i / 150, log: { level: "debug", message: `line ${i}` } });
    await reporter.flush();
    assert.deepEqual(
      sent.map((report) => report.logs?.length),
      [MAX_LOGS_PER_REPORT, 50],
    );
    assert.equal(sent[1]?.logs?.at(-1)?.message, "line 149");
  });

  test("should_continue=false stops the job once", async () => {
    const stops: string[] = [];
    const reporter = new ProgressReporter({
      minIntervalMs: 0,
      send: async () => false,
      onStop: (reason) => stops.push(reason),
    });
    reporter.push({ progress: 0.5 });
    await reporter.flush();
    reporter.push({ progress: 0.6 });
    await reporter.flush();
    assert.equal(stops.length, 1);
    assert.match(stops[0] ?? "", /asked the node to stop/);
  });

  test("log text is cut to 4096 bytes of UTF-8 without splitting a character", () => {
    const text = "é".repeat(3000);
    const cut = truncateUtf8(text, 4096);
    assert.equal(Buffer.byteLength(cut), 4096);
    assert.equal(cut, "é".repeat(2048));
    assert.equal(truncateUtf8("😀😀", 5), "😀");
    assert.equal(truncateUtf8("short", 4096), "short");
  });
});
