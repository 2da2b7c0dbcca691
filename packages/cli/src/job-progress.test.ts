import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  JobFailureReason,
  JobState,
  JobStatusSchema,
  LogLevel,
  LogLineSchema,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import {
  type StreamJobUpdatesResponse,
  StreamJobUpdatesResponseSchema,
} from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { createJobProgress } from "./job-progress.js";

/** A stream that keeps what was written; a terminal of 120 columns when `tty`. */
function sink(tty: boolean): { stream: Writable; text: () => string } {
  let text = "";
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  Object.assign(stream, { isTTY: tty, columns: 120 });
  return { stream, text: () => text };
}

let sequence = 0n;
function update(
  status: MessageInitShape<typeof JobStatusSchema>,
  extra: Partial<Pick<StreamJobUpdatesResponse, "liveMetrics" | "logs">> = {},
): StreamJobUpdatesResponse {
  sequence += 1n;
  return create(StreamJobUpdatesResponseSchema, {
    jobId: "train-1",
    sequence,
    status: create(JobStatusSchema, { jobId: "train-1", ...status }),
    ...extra,
  });
}

const NODE = "tsr1qnode";
const training = [
  update({ state: JobState.QUEUED }),
  update({ state: JobState.RUNNING, currentNodeAddress: NODE, attempt: 1 }),
  update(
    {
      state: JobState.RUNNING,
      currentNodeAddress: NODE,
      attempt: 1,
      progress: 0.5,
      currentEpoch: 1,
    },
    { liveMetrics: { "train/loss": 0.5, "train/accuracy": 0.75 } },
  ),
  update(
    { state: JobState.RUNNING, currentNodeAddress: NODE, attempt: 1, progress: 1, currentEpoch: 2 },
    {
      liveMetrics: { "train/loss": 0.25, "train/accuracy": 0.9 },
      logs: [create(LogLineSchema, { level: LogLevel.WARNING, message: "slow\ndisk" })],
    },
  ),
  update({
    state: JobState.COMPLETED,
    currentNodeAddress: "",
    attempt: 1,
    progress: 1,
    currentEpoch: 2,
  }),
];

describe("createJobProgress", () => {
  it("prints one plain line per change when not on a terminal", () => {
    const out = sink(false);
    const progress = createJobProgress(out.stream, { tty: false, totalEpochs: 2 });
    for (const u of training) progress.update(u);
    progress.reconnecting({ failures: 0, error: undefined, afterSequence: 5n });
    progress.reconnecting({
      failures: 1,
      error: new ConnectError("connection refused", Code.Unavailable),
      afterSequence: 5n,
    });
    progress.stop();
    progress.stop();
    progress.update(update({ state: JobState.FAILED }));
    assert.equal(
      out.text(),
      [
        "state: queued",
        `state: running (node ${NODE}, attempt 1)`,
        "epoch 1/2  train/accuracy=0.75  train/loss=0.5",
        "epoch 2/2  train/accuracy=0.9  train/loss=0.25",
        "log warning: slow disk",
        "state: completed (attempt 1)",
        "reconnecting to the job server (attempt 1: connection refused)",
        "",
      ].join("\n"),
    );
  });

  it("prints progress in tenths for jobs without epochs, and the failure", () => {
    const out = sink(false);
    const progress = createJobProgress(out.stream, { tty: false });
    progress.update(update({ state: JobState.QUEUED, errorMessage: "no node\nhas a GPU" }));
    progress.update(update({ state: JobState.QUEUED, errorMessage: "no node\nhas a GPU" }));
    progress.update(update({ state: JobState.RUNNING, progress: 0.05 }));
    progress.update(update({ state: JobState.RUNNING, progress: 0.34 }));
    progress.update(update({ state: JobState.RUNNING, progress: 0.36 }));
    progress.update(
      update({ state: JobState.RUNNING, progress: 0.5 }, { liveMetrics: { "eval/samples": 45 } }),
    );
    progress.update(
      update({
        state: JobState.FAILED,
        progress: 0.5,
        failureReason: JobFailureReason.INVALID_INPUT,
        errorMessage: "bad row 7",
      }),
    );
    progress.stop();
    assert.equal(
      out.text(),
      [
        "state: queued",
        "problem: no node has a GPU",
        "state: running",
        "progress: 30%",
        "metrics: eval/samples=45",
        "progress: 50%",
        "state: failed (invalid-input: bad row 7)",
        "",
      ].join("\n"),
    );
  });

  it("draws a bar on a terminal, with the lines above it and the final bar left on screen", () => {
    const out = sink(true);
    const progress = createJobProgress(out.stream, { tty: true, totalEpochs: 2 });
    for (const u of training) progress.update(u);
    progress.stop();
    // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes of the terminal
    const visible = out.text().replace(/\u001b\[[?0-9;]*[A-Za-z]/g, "");
    assert.match(visible, /epoch 1\/2 {2}train\/accuracy=0\.75 {2}train\/loss=0\.5\n/);
    assert.match(visible, /log warning: slow disk\n/);
    assert.match(
      visible,
      /completed +\[#{30}\] 100% {2}epoch 2\/2 {2}train\/accuracy=0\.9 {2}train\/loss=0\.25\n$/,
    );
  });
});
