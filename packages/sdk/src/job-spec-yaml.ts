/**
 * Job specs written as YAML (the format is documented in examples/README.md): mapped onto a
 * tessera.job.v1 JobSpec, with the local files still to upload and the outputs of earlier jobs
 * still to look up listed beside it. Every bad field is reported under its YAML path
 * ("dataset.file: no such file ./data.csv").
 */
import { randomUUID } from "node:crypto";
import { statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { isAddress } from "@tessera/identity/address";
import {
  type ContentRef,
  ContentRefSchema,
  DeviceType,
  type ModelDescriptor,
  ModelDescriptorSchema,
  type TensorSpec,
  TensorSpecSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  AggregationStrategy,
  FederatedParticipantSchema,
  type FederationSpec,
  FederationSpecSchema,
  JobPriority,
  type JobSpec,
  JobSpecSchema,
  JobType,
} from "@tessera/proto/tessera/job/v1/job_pb.js";
import { parseDocument } from "yaml";
import { DEVICE_TYPE_NAMES, JOB_PRIORITY_NAMES, JOB_TYPE_NAMES, lookupName } from "./job-names.js";
import { type FileRole, mediaTypeOf } from "./media-types.js";
import { SDK_PROTOCOL_VERSION } from "./protocol-version.js";
import { type SpecMap, type SpecProblem, SpecReader } from "./spec-reader.js";
import { parseByteSize, parseDurationMs } from "./units.js";

/** Client-chosen ids (job, escrow): 1-128 of [A-Za-z0-9._:-]. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** How long a paid job's escrow holds the money when `payment.expires_in` is not given: 24 h. */
export const DEFAULT_ESCROW_EXPIRES_IN_MS = 86_400_000;

/** The most attempts a spec may ask for (JobSpec.max_attempts). */
export const MAX_ATTEMPTS = 10;

const UINT32_MAX = 0xffff_ffff;

/**
 * Where in a JobSpec an input's ContentRef goes: the model's content, the dataset, the initial
 * weights, or the dataset of the n-th federated participant.
 */
export type ContentSlot =
  | "model"
  | "dataset"
  | "initial_weights"
  | `federation.participants.${number}.dataset`;

/** A local file the spec names, to upload as an artifact before the job is submitted. */
export interface LocalFileInput {
  /** The YAML path that named it, e.g. "dataset.file". */
  readonly field: string;
  /** Where its ContentRef goes. */
  readonly slot: ContentSlot;
  /** Absolute path. */
  readonly path: string;
  /** Artifact name: the file's base name. */
  readonly name: string;
  /** From `media_type`, else from the file's extension (see mediaTypeOf). */
  readonly mediaType: string;
  /** Size when the spec was parsed. */
  readonly sizeBytes: number;
}

/** An output of an earlier job the spec uses as an input (`from_job:` + `artifact:`). */
export interface JobOutputInput {
  /** The YAML path that named it, e.g. "model.from_job". */
  readonly field: string;
  /** Where its ContentRef goes. */
  readonly slot: ContentSlot;
  /** The earlier job. */
  readonly jobId: string;
  /** The name of its result artifact, e.g. "model". */
  readonly artifact: string;
}

/** What a paid spec asks for (`payment:`). */
export interface PaymentRequest {
  /** Base units to hold in escrow and to offer; greater than zero. */
  readonly amount: bigint;
  /** How long the escrow holds the money from its creation. */
  readonly escrowExpiresInMs: number;
  /** The escrow's id when the spec names one; otherwise the SDK derives one (see escrowIdFor). */
  readonly escrowId?: string | undefined;
}

/** A parsed job spec. */
export interface ParsedJobSpec {
  /**
   * The JobSpec, complete except for: the ContentRefs of {@link localFiles} and
   * {@link jobOutputs} (unset until submitJob fills them), and payer_address and escrow_id of a
   * paid job. payment_amount is the canonical decimal amount, "" for a free job.
   */
  readonly spec: JobSpec;
  /** Files to upload, in document order. */
  readonly localFiles: readonly LocalFileInput[];
  /** Outputs of earlier jobs to look up, in document order. */
  readonly jobOutputs: readonly JobOutputInput[];
  /** Set when `payment.amount` is above zero. */
  readonly payment: PaymentRequest | undefined;
  /** True when `job_id` was absent and a UUID was made up. */
  readonly jobIdGenerated: boolean;
}

/** A spec that cannot become a job; `problems` names every bad field. */
export class JobSpecError extends Error {
  constructor(
    readonly problems: readonly SpecProblem[],
    source?: string,
  ) {
    const listed = problems.map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`));
    super(`${source ? `${source}: ` : ""}${listed.join("; ")}`);
    this.name = "JobSpecError";
  }
}

/** Options of {@link parseJobSpecYaml}. */
export interface ParseJobSpecOptions {
  /** Names the document in error messages, e.g. its file name. */
  readonly source?: string | undefined;
  /** Makes up the job id when the spec has none; default randomUUID. */
  readonly generateJobId?: (() => string) | undefined;
}

const TOP_LEVEL = [
  "job_id",
  "type",
  "priority",
  "model",
  "dataset",
  "initial_weights",
  "hyperparameters",
  "epochs",
  "batch_size",
  "requirements",
  "payment",
  "direct_access",
  "federation",
  "expires_at",
] as const;

const CONTENT_KEYS = ["file", "media_type", "ref", "from_job", "artifact"] as const;
const MODEL_KEYS = [
  ...CONTENT_KEYS,
  "id",
  "name",
  "version",
  "description",
  "category",
  "input_format",
  "output_format",
  "inputs",
  "outputs",
] as const;
const REF_KEYS = ["digest", "size_bytes", "uri", "media_type"] as const;
const REQUIREMENT_KEYS = [
  "device",
  "runtime",
  "memory",
  "max_memory",
  "duration",
  "max_duration",
  "max_attempts",
  "min_reputation",
] as const;
const PAYMENT_KEYS = ["amount", "expires_in", "escrow_id"] as const;
const FEDERATION_KEYS = ["rounds", "nodes_per_round", "aggregation", "participants"] as const;
const TENSOR_KEYS = ["name", "shape", "dtype"] as const;

/** The result artifact a `from_job` input takes when `artifact` is not given, per slot. */
const DEFAULT_OUTPUT_ARTIFACT: Readonly<Record<"model" | "dataset" | "initial_weights", string>> = {
  model: "model",
  dataset: "data",
  initial_weights: "weights",
};

/**
 * Parses a YAML job spec. Relative file paths are resolved against `baseDir` (the spec file's
 * folder) and must name existing regular files.
 * @throws JobSpecError naming every bad field.
 */
export function parseJobSpecYaml(
  text: string,
  baseDir: string,
  options: ParseJobSpecOptions = {},
): ParsedJobSpec {
  const doc = parseDocument(text, { intAsBigInt: true, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new JobSpecError(
      doc.errors.map((error) => ({ path: "", message: oneLine(error.message) })),
      options.source,
    );
  }
  const parser = new SpecParser(baseDir, options);
  const parsed = parser.parse(doc.toJS() as unknown);
  if (parser.reader.problems.length > 0 || parsed === undefined) {
    throw new JobSpecError(parser.reader.problems, options.source);
  }
  return parsed;
}

/** Sets the ContentRef at `slot` of `spec` (creating the model descriptor when needed). */
export function setContentRef(spec: JobSpec, slot: ContentSlot, ref: ContentRef): void {
  if (slot === "model") {
    spec.model ??= create(ModelDescriptorSchema);
    spec.model.content = ref;
  } else if (slot === "dataset") {
    spec.dataset = ref;
  } else if (slot === "initial_weights") {
    spec.initialWeights = ref;
  } else {
    const index = Number(slot.split(".")[2]);
    const participant = spec.federation?.participants[index];
    if (participant === undefined) throw new RangeError(`no federated participant ${index}`);
    participant.dataset = ref;
  }
}

/** One parse: the reader collecting problems, and the inputs found so far. */
class SpecParser {
  readonly reader = new SpecReader();
  private readonly localFiles: LocalFileInput[] = [];
  private readonly jobOutputs: JobOutputInput[] = [];

  constructor(
    private readonly baseDir: string,
    private readonly options: ParseJobSpecOptions,
  ) {}

  parse(root: unknown): ParsedJobSpec | undefined {
    const r = this.reader;
    if (root === null || root === undefined) {
      r.fail(
        "",
        "the spec is empty; it needs at least type, model (except preprocessing) and dataset",
      );
      return undefined;
    }
    const doc = r.map(root, "", TOP_LEVEL);
    if (doc === undefined) return undefined;
    const spec = create(JobSpecSchema, { protocolVersion: SDK_PROTOCOL_VERSION });

    let jobIdGenerated = false;
    if (doc.job_id === undefined || doc.job_id === null) {
      spec.jobId = (this.options.generateJobId ?? randomUUID)();
      jobIdGenerated = true;
    } else {
      const jobId = r.text(doc.job_id, "job_id");
      if (jobId !== undefined) {
        if (JOB_ID_PATTERN.test(jobId)) spec.jobId = jobId;
        else
          r.fail(
            "job_id",
            `must be 1 to 128 of A-Z, a-z, 0-9, ".", "_", ":" and "-", got ${JSON.stringify(jobId)}`,
          );
      }
    }

    if (doc.type === undefined) {
      r.fail("type", `is required: ${[...JOB_TYPE_NAMES.keys()].join(", ")}`);
    } else {
      spec.jobType = this.enumValue(doc.type, "type", JOB_TYPE_NAMES) ?? JobType.UNSPECIFIED;
    }
    if (doc.priority !== undefined) {
      spec.priority =
        this.enumValue(doc.priority, "priority", JOB_PRIORITY_NAMES) ?? JobPriority.UNSPECIFIED;
    }

    if (doc.model !== undefined) {
      spec.model = this.model(doc.model);
    } else if (spec.jobType !== JobType.PREPROCESSING && spec.jobType !== JobType.UNSPECIFIED) {
      r.fail("model", "is required for this job type: give file, ref or from_job");
    }
    if (doc.dataset !== undefined) {
      const ref = this.content(doc.dataset, "dataset", "dataset", "dataset");
      if (ref !== undefined) spec.dataset = ref;
    }
    if (doc.initial_weights !== undefined) {
      const ref = this.content(
        doc.initial_weights,
        "initial_weights",
        "initial_weights",
        "weights",
      );
      if (ref !== undefined) spec.initialWeights = ref;
    }
    if (doc.federation !== undefined) {
      spec.federation = this.federation(doc.federation, spec.jobType);
    }
    if (doc.dataset === undefined && !this.everyParticipantHasData(spec)) {
      r.fail("dataset", "is required: give file, ref or from_job");
    }

    if (doc.hyperparameters !== undefined) this.hyperparameters(doc.hyperparameters, spec);
    if (doc.epochs !== undefined) spec.epochs = r.integer(doc.epochs, "epochs", 0, UINT32_MAX) ?? 0;
    if (doc.batch_size !== undefined) {
      spec.batchSize = r.integer(doc.batch_size, "batch_size", 0, UINT32_MAX) ?? 0;
    }
    if (doc.requirements !== undefined) this.requirements(doc.requirements, spec);
    if (doc.direct_access !== undefined) {
      spec.requestDirectAccess = r.boolean(doc.direct_access, "direct_access") ?? false;
    }
    if (doc.expires_at !== undefined) {
      const when = parseTime(doc.expires_at);
      if (when === undefined) {
        r.fail("expires_at", "must be a date and time such as 2030-01-31T12:00:00Z");
      } else {
        spec.expiresAt = timestampFromDate(when);
      }
    }
    const payment = doc.payment === undefined ? undefined : this.payment(doc.payment);
    spec.paymentAmount = payment === undefined ? "" : payment.amount.toString();
    if (payment !== undefined) {
      // What the job server needs before validators can price and route paid work.
      if (
        spec.estimatedDurationMs === 0n &&
        !r.problems.some((p) => p.path === "requirements.duration")
      ) {
        r.fail(
          "requirements.duration",
          "is required for a paid job: validators price it by the estimated duration",
        );
      }
      if (doc.model !== undefined && spec.model !== undefined && spec.model.modelId === "") {
        r.fail("model.id", "is required for a paid job: validators route paid work by model");
      }
    }

    return {
      spec,
      localFiles: this.localFiles,
      jobOutputs: this.jobOutputs,
      payment,
      jobIdGenerated,
    };
  }

  /** True when the spec lists federated participants and each names its own dataset. */
  private everyParticipantHasData(spec: JobSpec): boolean {
    const participants = spec.federation?.participants ?? [];
    const named = new Set<string>(
      [...this.localFiles, ...this.jobOutputs].map((input) => input.slot),
    );
    return (
      participants.length > 0 &&
      participants.every(
        (participant, i) =>
          participant.dataset !== undefined || named.has(`federation.participants.${i}.dataset`),
      )
    );
  }

  private enumValue<E>(value: unknown, path: string, names: ReadonlyMap<string, E>): E | undefined {
    const text = this.reader.string(value, path);
    if (text === undefined) return undefined;
    const found = lookupName(names, text);
    if (found === undefined) {
      return this.reader.fail(
        path,
        `unknown value ${JSON.stringify(text)}; use ${[...names.keys()].join(", ")}`,
      );
    }
    return found;
  }

  private model(value: unknown): ModelDescriptor | undefined {
    const r = this.reader;
    const map = r.map(value, "model", MODEL_KEYS);
    if (map === undefined) return undefined;
    const model = create(ModelDescriptorSchema);
    const content = this.contentOf(map, "model", "model", "model");
    if (content !== undefined) {
      model.content = content;
      model.source = sourceOf(content.uri);
      model.path = content.uri;
    }
    const local = this.localFiles.find((file) => file.slot === "model");
    const fromJob = this.jobOutputs.find((output) => output.slot === "model");
    if (local !== undefined) {
      model.source = "artifact";
      model.path = local.name;
    } else if (fromJob !== undefined) {
      model.source = "artifact";
      model.path = `${fromJob.jobId}/${fromJob.artifact}`;
    }
    const strings = [
      ["id", "modelId"],
      ["name", "name"],
      ["version", "version"],
      ["description", "description"],
      ["category", "category"],
      ["input_format", "inputFormat"],
      ["output_format", "outputFormat"],
    ] as const;
    for (const [key, field] of strings) {
      if (map[key] !== undefined) model[field] = r.text(map[key], `model.${key}`) ?? "";
    }
    if (map.inputs !== undefined) model.inputs = this.tensors(map.inputs, "model.inputs");
    if (map.outputs !== undefined) model.outputs = this.tensors(map.outputs, "model.outputs");
    return model;
  }

  private tensors(value: unknown, path: string): TensorSpec[] {
    const list = this.reader.list(value, path) ?? [];
    const tensors: TensorSpec[] = [];
    list.forEach((item, i) => {
      const at = `${path}[${i}]`;
      const map = this.reader.map(item, at, TENSOR_KEYS);
      if (map === undefined) return;
      const tensor = create(TensorSpecSchema);
      tensor.name = this.reader.nonEmptyString(map.name, `${at}.name`) ?? "";
      if (map.dtype !== undefined)
        tensor.dtype = this.reader.string(map.dtype, `${at}.dtype`) ?? "";
      if (map.shape !== undefined) {
        const dims = this.reader.list(map.shape, `${at}.shape`) ?? [];
        tensor.shape = dims.map((dim, d) =>
          BigInt(this.reader.integer(dim, `${at}.shape[${d}]`, -1, Number.MAX_SAFE_INTEGER) ?? 0),
        );
      }
      tensors.push(tensor);
    });
    return tensors;
  }

  /** An input given as a mapping of its own (dataset, initial_weights, a participant's dataset). */
  private content(
    value: unknown,
    path: string,
    slot: ContentSlot,
    role: FileRole,
  ): ContentRef | undefined {
    const map = this.reader.map(value, path, CONTENT_KEYS);
    return map === undefined ? undefined : this.contentOf(map, path, slot, role);
  }

  /**
   * The content named by exactly one of `file` (a local file, uploaded at submit), `ref` (a
   * ContentRef) or `from_job` (+ optional `artifact`, an earlier job's output). A ref is returned
   * at once; the other two are recorded and their slot filled at submit.
   */
  private contentOf(
    map: SpecMap,
    path: string,
    slot: ContentSlot,
    role: FileRole,
  ): ContentRef | undefined {
    const r = this.reader;
    const given = (["file", "ref", "from_job"] as const).filter((key) => map[key] !== undefined);
    if (given.length !== 1) {
      return r.fail(
        path,
        given.length === 0
          ? "give one of file, ref or from_job"
          : `give only one of file, ref or from_job, not ${given.join(" and ")}`,
      );
    }
    if (map.media_type !== undefined && map.file === undefined) {
      r.fail(`${path}.media_type`, "goes with file; a ref carries its own media_type");
    }
    if (map.artifact !== undefined && map.from_job === undefined) {
      r.fail(`${path}.artifact`, "goes with from_job");
    }
    if (map.file !== undefined) {
      this.localFile(map, path, slot, role);
      return undefined;
    }
    if (map.from_job !== undefined) {
      const jobId = r.text(map.from_job, `${path}.from_job`);
      if (jobId !== undefined && !JOB_ID_PATTERN.test(jobId)) {
        r.fail(`${path}.from_job`, `is not a job id: ${JSON.stringify(jobId)}`);
      }
      const defaultArtifact =
        slot === "model" || slot === "dataset" || slot === "initial_weights"
          ? DEFAULT_OUTPUT_ARTIFACT[slot]
          : "data";
      const artifact =
        map.artifact === undefined
          ? defaultArtifact
          : r.nonEmptyString(map.artifact, `${path}.artifact`);
      if (jobId !== undefined && JOB_ID_PATTERN.test(jobId) && artifact !== undefined) {
        this.jobOutputs.push({ field: `${path}.from_job`, slot, jobId, artifact });
      }
      return undefined;
    }
    return this.ref(map.ref, `${path}.ref`);
  }

  private localFile(map: SpecMap, path: string, slot: ContentSlot, role: FileRole): void {
    const r = this.reader;
    const field = `${path}.file`;
    const file = r.nonEmptyString(map.file, field);
    const mediaType =
      map.media_type === undefined
        ? undefined
        : r.nonEmptyString(map.media_type, `${path}.media_type`);
    if (file === undefined) return;
    const absolute = resolve(this.baseDir, file);
    let sizeBytes: number;
    try {
      const stats = statSync(absolute);
      if (!stats.isFile()) {
        r.fail(field, `${file} is not a regular file`);
        return;
      }
      sizeBytes = stats.size;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      r.fail(
        field,
        code === "ENOENT" || code === "ENOTDIR"
          ? `no such file ${file} (looked at ${absolute})`
          : `cannot read ${file}: ${(error as Error).message}`,
      );
      return;
    }
    this.localFiles.push({
      field,
      slot,
      path: absolute,
      name: basename(absolute),
      mediaType: mediaType ?? mediaTypeOf(absolute, role),
      sizeBytes,
    });
  }

  private ref(value: unknown, path: string): ContentRef | undefined {
    const r = this.reader;
    const map = r.map(value, path, REF_KEYS);
    if (map === undefined) return undefined;
    const ref = create(ContentRefSchema);
    const digest = r.string(map.digest, `${path}.digest`);
    if (digest !== undefined) {
      if (/^sha256:[0-9a-f]{64}$/.test(digest)) ref.digest = digest;
      else r.fail(`${path}.digest`, `must be "sha256:" and 64 lowercase hex digits`);
    }
    const size = r.integer(map.size_bytes, `${path}.size_bytes`, 0, Number.MAX_SAFE_INTEGER);
    if (size !== undefined) ref.sizeBytes = BigInt(size);
    if (map.uri !== undefined) {
      const uri = r.string(map.uri, `${path}.uri`);
      if (uri !== undefined) {
        if (/^(artifact:\/\/[^/\s]+|file:\/\/\/\S+|https?:\/\/\S+)$/.test(uri)) ref.uri = uri;
        else
          r.fail(
            `${path}.uri`,
            "must be artifact://<id>, file:///<absolute path> or an http(s) URL",
          );
      }
    }
    if (map.media_type !== undefined) {
      ref.mediaType = r.nonEmptyString(map.media_type, `${path}.media_type`) ?? "";
    }
    return ref;
  }

  private hyperparameters(value: unknown, spec: JobSpec): void {
    const r = this.reader;
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      r.fail("hyperparameters", "must be a mapping of names to values");
      return;
    }
    for (const [key, raw] of Object.entries(value as SpecMap)) {
      const path = `hyperparameters.${key}`;
      if (!/^[a-z][a-z0-9_]*$/.test(key)) {
        r.fail(path, "names are lower_snake_case (a-z, 0-9 and _, starting with a letter)");
        continue;
      }
      if (raw === null || raw === undefined) {
        r.fail(path, "has no value");
      } else if (typeof raw === "object") {
        // Lists and mappings (e.g. preprocessing "transforms") travel as JSON text.
        spec.hyperparameters[key] = JSON.stringify(raw, (_k, v: unknown) =>
          typeof v === "bigint" ? Number(v) : v,
        );
      } else {
        const text = r.text(raw, path);
        if (text !== undefined) spec.hyperparameters[key] = text;
      }
    }
  }

  private requirements(value: unknown, spec: JobSpec): void {
    const r = this.reader;
    const map = r.map(value, "requirements", REQUIREMENT_KEYS);
    if (map === undefined) return;
    if (map.device !== undefined) {
      const text = r.string(map.device, "requirements.device");
      if (text !== undefined && text.trim().toLowerCase() !== "any") {
        spec.requiredDevice =
          this.enumValue(text, "requirements.device", DEVICE_TYPE_NAMES) ?? DeviceType.UNSPECIFIED;
      }
    }
    if (map.runtime !== undefined) {
      spec.requiredRuntime = r.nonEmptyString(map.runtime, "requirements.runtime") ?? "";
    }
    const sizes = [
      ["memory", "estimatedMemoryBytes"],
      ["max_memory", "maxMemoryBytes"],
    ] as const;
    for (const [key, field] of sizes) {
      if (map[key] === undefined) continue;
      const bytes = parseByteSize(map[key]);
      if (typeof bytes === "string") r.fail(`requirements.${key}`, bytes);
      else spec[field] = BigInt(bytes);
    }
    const durations = [
      ["duration", "estimatedDurationMs"],
      ["max_duration", "maxDurationMs"],
    ] as const;
    for (const [key, field] of durations) {
      if (map[key] === undefined) continue;
      const ms = parseDurationMs(map[key]);
      if (typeof ms === "string") r.fail(`requirements.${key}`, ms);
      else spec[field] = BigInt(ms);
    }
    if (map.max_attempts !== undefined) {
      spec.maxAttempts =
        r.integer(map.max_attempts, "requirements.max_attempts", 0, MAX_ATTEMPTS) ?? 0;
    }
    if (map.min_reputation !== undefined) {
      spec.minReputation = r.number(map.min_reputation, "requirements.min_reputation", 0, 1) ?? 0;
    }
  }

  private payment(value: unknown): PaymentRequest | undefined {
    const r = this.reader;
    const map = r.map(value, "payment", PAYMENT_KEYS);
    if (map === undefined) return undefined;
    let amount: bigint | undefined;
    const raw = map.amount;
    if (typeof raw === "bigint") {
      amount = raw;
    } else if (typeof raw === "string" && /^[0-9]+$/.test(raw)) {
      amount = BigInt(raw);
    }
    if (amount === undefined || amount < 0n) {
      r.fail(
        "payment.amount",
        raw === undefined
          ? "is required: a whole number of base units (0 for a free job)"
          : `must be a whole number of base units (digits only), got ${JSON.stringify(typeof raw === "bigint" ? raw.toString() : raw)}`,
      );
      amount = undefined;
    }
    let escrowExpiresInMs = DEFAULT_ESCROW_EXPIRES_IN_MS;
    if (map.expires_in !== undefined) {
      const ms = parseDurationMs(map.expires_in);
      if (typeof ms === "string") r.fail("payment.expires_in", ms);
      else if (ms === 0) r.fail("payment.expires_in", "must be longer than zero");
      else escrowExpiresInMs = ms;
    }
    let escrowId: string | undefined;
    if (map.escrow_id !== undefined) {
      escrowId = r.text(map.escrow_id, "payment.escrow_id");
      if (escrowId !== undefined && !JOB_ID_PATTERN.test(escrowId)) {
        r.fail(
          "payment.escrow_id",
          `must be 1 to 128 of A-Z, a-z, 0-9, ".", "_", ":" and "-", got ${JSON.stringify(escrowId)}`,
        );
      }
    }
    if (amount === undefined || amount === 0n) return undefined;
    return { amount, escrowExpiresInMs, escrowId };
  }

  private federation(value: unknown, jobType: JobType): FederationSpec | undefined {
    const r = this.reader;
    const map = r.map(value, "federation", FEDERATION_KEYS);
    if (map === undefined) return undefined;
    if (jobType !== JobType.TRAINING && jobType !== JobType.UNSPECIFIED) {
      r.fail("federation", "is for training jobs only");
    }
    const federation = create(FederationSpecSchema);
    federation.rounds = r.integer(map.rounds, "federation.rounds", 1, UINT32_MAX) ?? 0;
    if (map.nodes_per_round !== undefined) {
      federation.nodesPerRound =
        r.integer(map.nodes_per_round, "federation.nodes_per_round", 1, UINT32_MAX) ?? 0;
    } else {
      federation.nodesPerRound = 1;
    }
    if (map.aggregation !== undefined) {
      const text = r.string(map.aggregation, "federation.aggregation");
      if (text !== undefined) {
        if (text.trim().toLowerCase() === "fedavg") {
          federation.aggregation = AggregationStrategy.FEDAVG;
        } else {
          r.fail("federation.aggregation", `unknown value ${JSON.stringify(text)}; use fedavg`);
        }
      }
    }
    if (map.participants !== undefined) {
      const list = r.list(map.participants, "federation.participants") ?? [];
      list.forEach((item, i) => {
        const at = `federation.participants[${i}]`;
        const participant = r.map(item, at, ["node_address", "dataset"]);
        if (participant === undefined) return;
        const address = r.string(participant.node_address, `${at}.node_address`);
        if (address !== undefined && !isAddress(address)) {
          r.fail(
            `${at}.node_address`,
            `is not a valid address (tsr1…): ${JSON.stringify(address)}`,
          );
        }
        const entry = federation.participants.length;
        federation.participants.push(
          create(FederatedParticipantSchema, { nodeAddress: address ?? "" }),
        );
        if (participant.dataset !== undefined) {
          const slot: ContentSlot = `federation.participants.${entry}.dataset`;
          const ref = this.content(participant.dataset, `${at}.dataset`, slot, "dataset");
          const target = federation.participants[entry];
          if (ref !== undefined && target !== undefined) target.dataset = ref;
        }
      });
      if (
        federation.participants.length > 0 &&
        federation.nodesPerRound > federation.participants.length
      ) {
        r.fail(
          "federation.nodes_per_round",
          `is ${federation.nodesPerRound} but only ${federation.participants.length} participants are listed`,
        );
      }
    }
    return federation;
  }
}

function sourceOf(uri: string): string {
  if (uri.startsWith("artifact://")) return "artifact";
  if (uri.startsWith("file://")) return "path";
  if (uri.startsWith("http://") || uri.startsWith("https://")) return "url";
  return "";
}

function parseTime(value: unknown): Date | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value;
  if (typeof value !== "string") return undefined;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) {
    return undefined;
  }
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, " ");
}
