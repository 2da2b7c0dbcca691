/**
 * ArtifactService handlers: proto requests to artifact store calls and back. The store
 * (./artifact-store.ts) decides; this file checks the protocol version, takes the verified caller
 * from the signed-request interceptor (@tessera/auth), asks the job server's hooks who may read and
 * upload, and maps errors with {@link toConnectError}.
 *
 * Every RPC needs a signed caller (`requireCaller`: unauthenticated otherwise): an upload belongs
 * to its uploader (upload ids are per caller), and only permitted callers may read an artifact. The
 * server must install @tessera/auth's createVerifyingInterceptor.
 */
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { requireCaller } from "@tessera/auth";
import {
  type Artifact,
  type ArtifactService,
  type DownloadArtifactResponse,
  DownloadArtifactResponseSchema,
} from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { StoreConflictError } from "@tessera/store";
import { type ArtifactStore, type BeginUploadInput, checkBeginUpload } from "./artifact-store.js";
import { ArtifactError, type ArtifactErrorKind, invalidArgument } from "./errors.js";
import { checkProtocolVersion } from "./protocol-version.js";
import { byteCount } from "./validation.js";

/** The job and lease an upload claims to belong to ("" when none). */
export interface UploadTarget {
  readonly jobId: string;
  readonly leaseId: string;
}

/** What {@link createArtifactService} needs. */
export interface ArtifactServiceDeps {
  /** The artifact store (./artifact-store.ts). */
  readonly artifacts: ArtifactStore;
  /**
   * Whether `caller` may read `artifact` (GetArtifact, DownloadArtifact). The artifact's owner
   * always may, without asking; the job server answers for the owner of its job, a node holding a
   * lease on a job that uses it and its configured readers (validators). False:
   * permission_denied.
   */
  readonly canRead: (caller: string, artifact: Artifact) => Promise<boolean> | boolean;
  /**
   * Whether `caller` may upload for `target`; asked by BeginUpload and by CommitUpload before
   * the artifact is created (a lease may have ended meanwhile). Resolves to allow; throws a
   * ConnectError (e.g. permission_denied, failed_precondition) to refuse. Default: anyone may
   * upload for any job.
   */
  readonly canUpload?: ((caller: string, target: UploadTarget) => Promise<void> | void) | undefined;
}

const CODE_OF: Readonly<Record<ArtifactErrorKind, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
  data_loss: Code.DataLoss,
};

/**
 * The one mapping of errors to Connect codes for the artifact handlers: an ArtifactError to its
 * kind's code with its message, a ConnectError unchanged, a transaction that kept losing to
 * concurrent ones `unavailable` (nothing was written; retrying is safe), anything else `internal`
 * with a generic message and the original as `cause` (the runtime logs it; the client never sees
 * it).
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof ArtifactError) return new ConnectError(error.message, CODE_OF[error.kind]);
  if (error instanceof StoreConflictError) {
    return new ConnectError(
      "the artifact store is busy; nothing was written, retry the call",
      Code.Unavailable,
      undefined,
      undefined,
      error,
    );
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** Runs a unary handler body, mapping whatever it throws. */
async function translate<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw toConnectError(error);
  }
}

const EMPTY_SHA256 = new Uint8Array(createHash("sha256").digest());

/** The full ArtifactService over `deps.artifacts`. */
export function createArtifactService(
  deps: ArtifactServiceDeps,
): ServiceImpl<typeof ArtifactService> {
  const { artifacts, canRead } = deps;
  const canUpload = deps.canUpload ?? (() => undefined);

  /** The artifact `artifactId` if `ctx`'s caller may read it. */
  async function readable(ctx: HandlerContext, artifactId: string): Promise<Artifact> {
    const caller = requireCaller(ctx);
    if (artifactId === "") throw invalidArgument("artifact_id", "is required");
    const artifact = await artifacts.getArtifact(artifactId);
    if (artifact === undefined) {
      throw new ArtifactError("not_found", `artifact "${artifactId}" does not exist`);
    }
    if (artifact.ownerAddress !== caller && !(await canRead(caller, artifact))) {
      throw new ArtifactError(
        "permission_denied",
        `${caller} may not read artifact "${artifactId}" (not its owner, nor a party of its job)`,
      );
    }
    return artifact;
  }

  return {
    beginUpload: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "BeginUpload");
        if (req.sizeBytes > BigInt(artifacts.maxArtifactBytes)) {
          throw new ArtifactError(
            "resource_exhausted",
            `size_bytes: ${req.sizeBytes} is above this server's artifact limit of ${artifacts.maxArtifactBytes} bytes`,
          );
        }
        const input: BeginUploadInput = {
          owner: caller,
          uploadId: req.uploadId,
          name: req.name,
          mediaType: req.mediaType,
          sizeBytes: Number(req.sizeBytes),
          digest: req.digest,
          jobId: req.jobId,
          leaseId: req.leaseId,
        };
        checkBeginUpload(input, artifacts.maxArtifactBytes);
        await canUpload(caller, { jobId: req.jobId, leaseId: req.leaseId });
        const progress = await artifacts.beginUpload(input);
        return {
          uploadId: progress.uploadId,
          committedOffset: BigInt(progress.committedOffset),
          maxChunkBytes: progress.maxChunkBytes,
          expiresAt: timestampFromMs(progress.expiresAtMs),
          ...(progress.existingArtifact === undefined
            ? {}
            : { existingArtifact: progress.existingArtifact }),
        };
      }),

    uploadChunks: (requests, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        let uploadId: string | undefined;
        let committed = 0;
        for await (const chunk of requests) {
          if (uploadId === undefined) {
            checkProtocolVersion(chunk.protocolVersion, "UploadChunks");
            uploadId = chunk.uploadId;
          } else {
            if (chunk.protocolVersion !== undefined) {
              checkProtocolVersion(chunk.protocolVersion, "UploadChunks");
            }
            if (chunk.uploadId !== uploadId) {
              throw invalidArgument(
                "upload_id",
                `every chunk of one stream must name the same upload ("${uploadId}"), got "${chunk.uploadId}"`,
              );
            }
          }
          committed = await artifacts.appendChunk({
            owner: caller,
            uploadId,
            offset: byteCount(chunk.offset, "offset"),
            data: chunk.data,
            sha256: chunk.sha256,
          });
        }
        if (uploadId === undefined) {
          throw invalidArgument(
            "data",
            "the stream carried no chunk; BeginUpload answers the committed offset",
          );
        }
        return { committedOffset: BigInt(committed) };
      }),

    commitUpload: (req, ctx) =>
      translate(async () => {
        const caller = requireCaller(ctx);
        checkProtocolVersion(req.protocolVersion, "CommitUpload");
        const upload = await artifacts.findUpload(caller, req.uploadId);
        if (upload?.state === "open") {
          await canUpload(caller, { jobId: upload.jobId, leaseId: upload.leaseId });
        }
        const artifact = await artifacts.commitUpload({
          owner: caller,
          uploadId: req.uploadId,
          digest: req.digest,
          sizeBytes: byteCount(req.sizeBytes, "size_bytes"),
        });
        return { artifact };
      }),

    async *downloadArtifact(req, ctx) {
      try {
        checkProtocolVersion(req.protocolVersion, "DownloadArtifact");
        const artifact = await readable(ctx, req.artifactId);
        const range = {
          offset: byteCount(req.offset, "offset"),
          length: byteCount(req.length, "length"),
        };
        let first = true;
        const message = (offset: number, data: Uint8Array, sha256: Uint8Array) => {
          const response: DownloadArtifactResponse = create(DownloadArtifactResponseSchema, {
            offset: BigInt(offset),
            data,
            sha256,
            ...(first ? { artifact } : {}),
          });
          first = false;
          return response;
        };
        for await (const chunk of artifacts.readArtifact(artifact, range, ctx.signal)) {
          yield message(chunk.offset, chunk.data, chunk.sha256);
        }
        // Nothing to send (an empty artifact, or the offset at its end): still answer the record.
        if (first) yield message(range.offset, new Uint8Array(0), EMPTY_SHA256);
      } catch (error) {
        throw toConnectError(error);
      }
    },

    getArtifact: (req, ctx) =>
      translate(async () => {
        checkProtocolVersion(req.protocolVersion, "GetArtifact");
        return { artifact: await readable(ctx, req.artifactId) };
      }),
  };
}
