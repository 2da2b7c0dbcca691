/**
 * Completion validation of batch jobs by re-execution: a validator's {@link CompletionExecutor}
 * (structurally the interface of services/registry/src/validation/executors.ts) for INFERENCE and
 * EVALUATION jobs whose evidence is the Job record (input_media_type
 * "application/vnd.tessera.job+proto", input_data = binary tessera.job.v1.Job with spec and
 * result).
 *
 * It checks that the result's artifacts hash to the signed result hash (and that the evidence's
 * manifest text is that manifest), fetches model, dataset and result artifacts into a
 * content-addressed cache (verifying every digest), then
 * - INFERENCE: re-runs a deterministic sample of rows (chosen by a generator seeded with the job
 *   id, so every validator checks the same rows and a node cannot know which in advance) and
 *   compares each output value with the "predictions" line of that row;
 * - EVALUATION: recomputes the metrics over the whole dataset and compares them with the
 *   "metrics" artifact's `final` object and JobResult.final_metrics.
 * Values agree when |claimed - recomputed| <= tolerance × max(1, |recomputed|). Disagreement is a
 * verdict with a reason naming the row, output or metric (never values or payload bytes); failing
 * to fetch or run anything throws, so the validator refuses to sign.
 */
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { fromBinary } from "@bufbuild/protobuf";
import { sha256 } from "@tessera/identity/hash";
import { ResultManifestError, resultManifest } from "@tessera/identity/result-manifest";
import type { ContentRef } from "@tessera/proto/tessera/common/v1/common_pb.js";
import { type Job, JobSchema, JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import type { ExecutionEvidence } from "@tessera/proto/tessera/registry/v1/validation_pb.js";
import { type ArtifactFetcher, createContentCache } from "./content-cache.js";
import { columnChoiceOf, selectDataset } from "./dataset.js";
import { evaluateModel } from "./evaluation.js";
import { DEFAULT_INFERENCE_BATCH_SIZE } from "./inference.js";
import { datasetFormatOf } from "./media-types.js";
import { loadModelSource } from "./model-source.js";
import { checkInputWidth, openOnnxModel, runBatches } from "./onnx-runner.js";
import { createRandom } from "./random.js";
import { readTable } from "./table.js";

/** Media type of evidence whose input is a binary tessera.job.v1.Job. */
export const JOB_EVIDENCE_MEDIA_TYPE = "application/vnd.tessera.job+proto";

/** A finished piece of work to check by running it again (as the registry defines it). */
export interface ReexecutionTask {
  readonly requestId: string;
  readonly modelId: string;
  readonly subnetId: bigint;
  readonly computeNodeAddress: string;
  /** SHA-256 of the result manifest the node signed (32 bytes). */
  readonly resultHash: Uint8Array;
  readonly evidence: ExecutionEvidence;
}

/** An executor's finding. */
export interface ReexecutionVerdict {
  readonly agrees: boolean;
  readonly reason?: string | undefined;
}

/** Something that can run a kind of work again (as the registry defines it). */
export interface CompletionExecutor {
  readonly name: string;
  supports(task: ReexecutionTask): boolean;
  reexecute(task: ReexecutionTask, signal: AbortSignal): Promise<ReexecutionVerdict>;
}

/** Options of {@link createBatchReexecutor}. */
export interface BatchReexecutorOptions {
  /** Downloads "artifact://" content from the job server (the validator must be an allowed reader). */
  readonly fetchArtifact: ArtifactFetcher;
  /** Directory of the content cache. */
  readonly cacheDir: string;
  /** Inference rows re-run per job; default 32. */
  readonly sampleRows?: number | undefined;
  /** Relative/absolute tolerance of a comparison; default 1e-4. */
  readonly tolerance?: number | undefined;
}

/** Name of the executor, shown in verdict reasons. */
export const BATCH_REEXECUTOR_NAME = "tessera-ml-batch";

function decodeJob(evidence: ExecutionEvidence): Job | undefined {
  if (evidence.inputMediaType !== JOB_EVIDENCE_MEDIA_TYPE || evidence.input.case !== "inputData")
    return undefined;
  try {
    return fromBinary(JobSchema, evidence.input.value);
  } catch {
    return undefined;
  }
}

function fetchable(ref: ContentRef | undefined): ref is ContentRef {
  return ref !== undefined && ref.uri !== "" && !ref.uri.startsWith("file://");
}

function artifactRef(job: Job, name: string): ContentRef | undefined {
  return job.result?.artifacts.find((artifact) => artifact.name === name)?.content;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** `count` distinct row indices of [0, rows), chosen by the job id, in ascending order. */
export function sampleRowIndices(requestId: string, rows: number, count: number): number[] {
  const random = createRandom(`tessera.reexecute/v1:${requestId}`);
  const k = Math.min(count, rows);
  const chosen = new Set<number>();
  // Floyd's algorithm: k draws, no rejection loop, no array of all rows.
  for (let j = rows - k; j < rows; j++) {
    const t = random.nextInt(j + 1);
    chosen.add(chosen.has(t) ? j : t);
  }
  return [...chosen].sort((a, b) => a - b);
}

/** Reads the lines at `wanted` (sorted indices) of an NDJSON file and counts all its lines. */
async function readLines(
  path: string,
  wanted: readonly number[],
): Promise<{ lines: Map<number, string>; count: number }> {
  const want = new Set(wanted);
  const lines = new Map<number, string>();
  let count = 0;
  const reader = createInterface({
    input: createReadStream(path, "utf8"),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of reader) {
    if (line.trim() === "") continue;
    if (want.has(count)) lines.set(count, line);
    count++;
  }
  return { lines, count };
}

/** A re-executor of INFERENCE and EVALUATION jobs; see the module comment. */
export function createBatchReexecutor(options: BatchReexecutorOptions): CompletionExecutor {
  const cache = createContentCache({ dir: options.cacheDir, fetchArtifact: options.fetchArtifact });
  const sampleRows = Math.max(1, options.sampleRows ?? 32);
  const tolerance = options.tolerance ?? 1e-4;
  const within = (claimed: number, recomputed: number) =>
    Math.abs(claimed - recomputed) <= tolerance * Math.max(1, Math.abs(recomputed));
  const disagree = (reason: string): ReexecutionVerdict => ({
    agrees: false,
    reason: `${BATCH_REEXECUTOR_NAME}: ${reason}`,
  });

  async function checkInference(job: Job, signal: AbortSignal): Promise<ReexecutionVerdict> {
    const spec = job.spec;
    const modelRef = spec?.model?.content;
    const datasetRef = spec?.dataset;
    const predictionsRef = artifactRef(job, "predictions");
    if (spec === undefined || !fetchable(modelRef) || !fetchable(datasetRef)) {
      throw new Error("the job's model or dataset cannot be fetched");
    }
    if (predictionsRef === undefined) return disagree("the result has no predictions artifact");
    const modelPath = await cache.resolve(modelRef, signal);
    const datasetPath = await cache.resolve(datasetRef, signal);
    const weightsPath = fetchable(spec.initialWeights)
      ? await cache.resolve(spec.initialWeights, signal)
      : undefined;
    const predictionsPath = await cache.resolve(predictionsRef, signal);
    const source = await loadModelSource(modelPath, modelRef.mediaType || undefined, weightsPath);
    const table = await readTable(
      datasetPath,
      datasetFormatOf(datasetRef.mediaType || undefined, datasetPath),
    );
    const dataset = selectDataset(table, columnChoiceOf(spec.hyperparameters, "none"));
    const rows = sampleRowIndices(job.spec?.jobId ?? "", dataset.rowCount, sampleRows);
    const { lines, count } = await readLines(predictionsPath, rows);
    if (count !== dataset.rowCount) {
      return disagree(`predictions have ${count} lines for ${dataset.rowCount} dataset rows`);
    }
    const width = dataset.featureCount;
    const features = new Float32Array(rows.length * width);
    rows.forEach((row, i) => {
      features.set(dataset.features.subarray(row * width, (row + 1) * width), i * width);
    });
    const model = await openOnnxModel(source.bytes);
    try {
      checkInputWidth(model, width, dataset.featureNames);
      const batchSize = spec.batchSize || DEFAULT_INFERENCE_BATCH_SIZE;
      for await (const batch of runBatches(
        model,
        features,
        rows.length,
        width,
        batchSize,
        signal,
      )) {
        for (let i = 0; i < batch.count; i++) {
          const row = rows[batch.start + i] ?? 0;
          let claimed: unknown;
          try {
            claimed = JSON.parse(lines.get(row) ?? "");
          } catch {
            return disagree(`predictions row ${row + 1} is not JSON`);
          }
          if (claimed === null || typeof claimed !== "object" || Array.isArray(claimed)) {
            return disagree(`predictions row ${row + 1} is not an object`);
          }
          const object = claimed as Record<string, unknown>;
          if (Object.keys(object).length !== model.outputNames.length) {
            return disagree(`predictions row ${row + 1} does not have exactly the model's outputs`);
          }
          for (const name of model.outputNames) {
            const output = batch.outputs.get(name);
            const values = object[name];
            if (output === undefined) throw new Error(`the model did not produce output ${name}`);
            if (!Array.isArray(values) || values.length !== output.width) {
              return disagree(
                `predictions row ${row + 1}, output ${JSON.stringify(name)} has the wrong length`,
              );
            }
            for (let c = 0; c < output.width; c++) {
              const value = values[c];
              const expected = output.values[i * output.width + c] ?? Number.NaN;
              if (typeof value !== "number" || !within(value, expected)) {
                return disagree(
                  `predictions row ${row + 1}, output ${JSON.stringify(name)} differs from re-execution beyond tolerance ${tolerance}`,
                );
              }
            }
          }
        }
      }
    } finally {
      await model.close();
    }
    return { agrees: true };
  }

  async function checkEvaluation(job: Job, signal: AbortSignal): Promise<ReexecutionVerdict> {
    const spec = job.spec;
    const modelRef = spec?.model?.content;
    const datasetRef = spec?.dataset;
    const metricsRef = artifactRef(job, "metrics");
    if (spec === undefined || !fetchable(modelRef) || !fetchable(datasetRef)) {
      throw new Error("the job's model or dataset cannot be fetched");
    }
    if (metricsRef === undefined) return disagree("the result has no metrics artifact");
    const modelPath = await cache.resolve(modelRef, signal);
    const datasetPath = await cache.resolve(datasetRef, signal);
    const weightsPath = fetchable(spec.initialWeights)
      ? await cache.resolve(spec.initialWeights, signal)
      : undefined;
    const metricsPath = await cache.resolve(metricsRef, signal);
    let claimed: Record<string, unknown>;
    try {
      const doc = JSON.parse(await readFile(metricsPath, "utf8")) as { final?: unknown };
      if (doc.final === null || typeof doc.final !== "object") throw new Error("no final metrics");
      claimed = doc.final as Record<string, unknown>;
    } catch {
      return disagree("the metrics artifact is not a metrics document with final metrics");
    }
    const source = await loadModelSource(modelPath, modelRef.mediaType || undefined, weightsPath);
    const table = await readTable(
      datasetPath,
      datasetFormatOf(datasetRef.mediaType || undefined, datasetPath),
    );
    const dataset = selectDataset(table, columnChoiceOf(spec.hyperparameters, "required"));
    const batchSize = spec.batchSize || DEFAULT_INFERENCE_BATCH_SIZE;
    const { metrics } = await evaluateModel(
      source,
      dataset,
      spec.hyperparameters,
      batchSize,
      signal,
    );
    const reported = job.result?.finalMetrics ?? {};
    for (const [key, value] of Object.entries(metrics)) {
      const inArtifact = claimed[key];
      if (typeof inArtifact !== "number" || !within(inArtifact, value)) {
        return disagree(
          `metric ${key} of the metrics artifact differs from re-execution beyond tolerance ${tolerance}`,
        );
      }
      const inResult = reported[key];
      if (inResult !== undefined && !within(inResult, value)) {
        return disagree(
          `final metric ${key} differs from re-execution beyond tolerance ${tolerance}`,
        );
      }
    }
    return { agrees: true };
  }

  return {
    name: BATCH_REEXECUTOR_NAME,
    supports(task) {
      const job = decodeJob(task.evidence);
      const spec = job?.spec;
      if (job === undefined || spec === undefined || job.result === undefined) return false;
      if (spec.jobType !== JobType.INFERENCE && spec.jobType !== JobType.EVALUATION) return false;
      // Node-local (file://) inputs never leave the node: there is nothing to re-run here.
      return fetchable(spec.model?.content) && fetchable(spec.dataset);
    },
    async reexecute(task, signal) {
      const job = decodeJob(task.evidence);
      if (job?.spec === undefined || job.result === undefined) {
        throw new Error("the evidence holds no job record with a result");
      }
      if (job.spec.jobId !== task.requestId) return disagree("the job record is for another job");
      let manifest: string;
      try {
        manifest = resultManifest(
          job.result.artifacts.map((artifact) => ({
            name: artifact.name,
            digest: artifact.content?.digest ?? "",
          })),
        );
      } catch (error) {
        if (error instanceof ResultManifestError) return disagree(error.message);
        throw error;
      }
      if (!equalBytes(sha256(new TextEncoder().encode(manifest)), task.resultHash)) {
        return disagree("the job's result artifacts do not hash to the signed result hash");
      }
      const evidenceResult = task.evidence.result;
      if (
        evidenceResult.case === "resultData" &&
        !equalBytes(evidenceResult.value, new TextEncoder().encode(manifest))
      ) {
        return disagree("the evidence's result is not the manifest of the job's artifacts");
      }
      return job.spec.jobType === JobType.INFERENCE
        ? checkInference(job, signal)
        : checkEvaluation(job, signal);
    },
  };
}
