/** Test data: seeded Gaussian blobs as CSV or NDJSON, and JobSpec helpers. */
import { create } from "@bufbuild/protobuf";
import { type JobSpec, JobSpecSchema, type JobType } from "@tessera/proto/tessera/job/v1/job_pb.js";
import { createRandom } from "./random.js";

/** One row of the blobs dataset. */
export interface BlobRow {
  readonly x: readonly number[];
  readonly label: number;
}

/**
 * `rows` points in `features` dimensions, `classes` well-separated Gaussian clusters (centres
 * 4 apart along different axes, standard deviation `spread`), labels 0..classes-1, interleaved.
 */
export function gaussianBlobs(options: {
  rows: number;
  classes: number;
  features: number;
  seed: number;
  spread?: number;
}): BlobRow[] {
  const random = createRandom(`blobs:${options.seed}`);
  const spread = options.spread ?? 1;
  const rows: BlobRow[] = [];
  for (let i = 0; i < options.rows; i++) {
    const label = i % options.classes;
    const x = Array.from({ length: options.features }, (_, f) => {
      const centre =
        f === label % options.features ? 4 * (1 + Math.floor(label / options.features)) : 0;
      return Math.round((centre + random.nextNormal() * spread) * 1e4) / 1e4;
    });
    rows.push({ x, label });
  }
  return rows;
}

/** The blobs as CSV with columns f0..f<n-1>,label. */
export function blobsCsv(rows: readonly BlobRow[]): string {
  const width = rows[0]?.x.length ?? 0;
  const header = [...Array.from({ length: width }, (_, f) => `f${f}`), "label"].join(",");
  return `${header}\n${rows.map((row) => [...row.x, row.label].join(",")).join("\n")}\n`;
}

/** The blobs as NDJSON objects {"f0":…, …, "label":…}. */
export function blobsNdjson(rows: readonly BlobRow[]): string {
  return rows
    .map((row) => {
      const object: Record<string, number> = {};
      row.x.forEach((value, f) => {
        object[`f${f}`] = value;
      });
      object.label = row.label;
      return JSON.stringify(object);
    })
    .join("\n")
    .concat("\n");
}

/** A JobSpec of `jobType` with the given settings. */
export function jobSpec(
  jobType: JobType,
  settings: {
    hyperparameters?: Record<string, string>;
    epochs?: number;
    batchSize?: number;
    jobId?: string;
  } = {},
): JobSpec {
  return create(JobSpecSchema, {
    jobId: settings.jobId ?? "job-1",
    jobType,
    hyperparameters: settings.hyperparameters ?? {},
    epochs: settings.epochs ?? 0,
    batchSize: settings.batchSize ?? 0,
  });
}
