/**
 * Entry point of a job's worker process (forked by ./job-process.ts): runs one job with the
 * @tessera/ml executors and reports over IPC. The node enforces the job's time and memory limits
 * from outside (it kills this process), so nothing here has to be trusted to stop on its own.
 *
 * Side effects at import are the point of this file: it is a process entry, like main.ts.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { JobInputError } from "@tessera/ml/errors";
import { runJob } from "@tessera/ml/run-job";
import { JobSpecSchema } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { FromWorker, ToWorker, WorkerJobInput } from "./worker-messages.js";

/** How often the worker reports its own RSS (the node's fallback where /proc is absent). */
const MEMORY_REPORT_MS = 250;

const controller = new AbortController();
let started = false;

function send(message: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

async function run(input: WorkerJobInput, workDir: string): Promise<FromWorker> {
  const spec = fromBinary(JobSpecSchema, input.specBinary);
  try {
    const output = await runJob(
      {
        spec,
        modelPath: input.modelPath,
        modelMediaType: input.modelMediaType,
        datasetPath: input.datasetPath,
        datasetMediaType: input.datasetMediaType,
        initialWeightsPath: input.initialWeightsPath,
      },
      {
        workDir,
        signal: controller.signal,
        onProgress: (event) => {
          void send({ type: "progress", event });
        },
      },
    );
    return {
      type: "result",
      ok: true,
      artifacts: output.artifacts,
      finalMetrics: output.finalMetrics,
    };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (controller.signal.aborted) return { type: "result", ok: false, kind: "cancelled", message };
    return {
      type: "result",
      ok: false,
      kind: error instanceof JobInputError ? "invalid_input" : "error",
      message,
    };
  }
}

process.on("message", (message: ToWorker) => {
  if (message.type === "cancel") {
    controller.abort(new Error("the job was cancelled"));
    return;
  }
  if (message.type !== "start" || started) return;
  started = true;
  const memory = setInterval(() => {
    void send({ type: "memory", rssBytes: process.memoryUsage.rss() });
  }, MEMORY_REPORT_MS);
  memory.unref();
  void run(message.input, message.workDir).then(async (result) => {
    clearInterval(memory);
    await send(result);
    process.disconnect();
    process.exit(0);
  });
});

// Ctrl-C in a terminal signals the whole process group: the node decides how its jobs end (it
// gives them back on shutdown), so the worker leaves those signals to it.
process.on("SIGINT", () => undefined);
process.on("SIGTERM", () => undefined);

// The node went away (crash, kill): nobody wants the result any more.
process.on("disconnect", () => {
  if (!controller.signal.aborted) controller.abort(new Error("the node went away"));
  setTimeout(() => process.exit(1), 1000).unref();
});
