// Test-only: an ArtifactService over in-memory state (the job server's real one lives in
// services/job-server/src/artifacts) with knobs that break streams, corrupt chunks or lie about
// digests, served by a real HTTP/2 server on port 0 (so a client that stops reading a stream
// really cancels it), so the SDK's resume and verification paths can be driven deterministically.

import { createHash } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  type ConnectRouter,
  createClient,
} from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { ContentRefSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import {
  type Artifact,
  ArtifactSchema,
  ArtifactService,
} from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";

function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/** What the fake server does wrong on purpose, and what it saw. */
export interface FakeArtifactServer {
  readonly client: Client<typeof ArtifactService>;
  /** Largest chunk it accepts and sends. */
  maxChunkBytes: number;
  /** Fail the next upload streams with deadline_exceeded after this many chunks each. */
  cutUploadsAfterChunks: number[];
  /** Fail the next download streams with deadline_exceeded after this many chunks each. */
  cutDownloadsAfterChunks: number[];
  /** Send this many upcoming download chunks with a wrong SHA-256. */
  corruptDownloadChunks: number;
  /** Answer this error to every UploadChunks call. */
  uploadError: ConnectError | undefined;
  /** BeginUpload requests: upload id and the committed offset answered. */
  readonly begins: Array<{ uploadId: string; committedOffset: number }>;
  /** UploadChunks streams: the offset of each one's first chunk. */
  readonly uploadStreams: number[];
  /** DownloadArtifact requests: their offsets. */
  readonly downloadOffsets: number[];
  /** Stores `content` as an artifact directly; `digest` overrides the recorded digest (a liar). */
  addArtifact(content: Uint8Array, digest?: string): Artifact;
  /** Closes the client's session and the server. */
  close(): Promise<void>;
}

interface Upload {
  readonly name: string;
  readonly mediaType: string;
  readonly size: number;
  readonly digest: string;
  bytes: Buffer;
  artifact?: Artifact;
}

/** A fresh {@link FakeArtifactServer} with `maxChunkBytes` (default 1000), listening. */
export async function startFakeArtifactServer(maxChunkBytes = 1000): Promise<FakeArtifactServer> {
  const uploads = new Map<string, Upload>();
  const contents = new Map<string, Uint8Array>();
  const artifacts = new Map<string, Artifact>();
  let nextId = 1;

  const makeArtifact = (name: string, mediaType: string, content: Uint8Array, digest: string) => {
    const artifactId = `art_${nextId++}`;
    const artifact = create(ArtifactSchema, {
      artifactId,
      name,
      content: create(ContentRefSchema, {
        digest,
        sizeBytes: BigInt(content.length),
        uri: `artifact://${artifactId}`,
        mediaType,
      }),
      ownerAddress: "tsr1fake",
    });
    artifacts.set(artifactId, artifact);
    contents.set(artifactId, content);
    return artifact;
  };

  const fake: Omit<FakeArtifactServer, "client" | "close"> = {
    maxChunkBytes,
    cutUploadsAfterChunks: [],
    cutDownloadsAfterChunks: [],
    corruptDownloadChunks: 0,
    uploadError: undefined,
    begins: [],
    uploadStreams: [],
    downloadOffsets: [],
    addArtifact(content, digest) {
      const real = `sha256:${createHash("sha256").update(content).digest("hex")}`;
      return makeArtifact("added", "application/octet-stream", content, digest ?? real);
    },
  };

  const routes = (router: ConnectRouter) => {
    router.service(ArtifactService, {
      beginUpload(req) {
        let upload = uploads.get(req.uploadId);
        if (upload === undefined) {
          upload = {
            name: req.name,
            mediaType: req.mediaType,
            size: Number(req.sizeBytes),
            digest: req.digest,
            bytes: Buffer.alloc(0),
          };
          uploads.set(req.uploadId, upload);
        } else if (upload.name !== req.name || upload.digest !== req.digest) {
          throw new ConnectError("other metadata", Code.AlreadyExists);
        }
        fake.begins.push({ uploadId: req.uploadId, committedOffset: upload.bytes.length });
        return {
          uploadId: req.uploadId,
          committedOffset: BigInt(upload.bytes.length),
          maxChunkBytes: fake.maxChunkBytes,
          ...(upload.artifact === undefined ? {} : { existingArtifact: upload.artifact }),
        };
      },
      async uploadChunks(requests) {
        if (fake.uploadError !== undefined) throw fake.uploadError;
        const cutAfter = fake.cutUploadsAfterChunks.shift();
        let upload: Upload | undefined;
        let received = 0;
        for await (const chunk of requests) {
          upload ??= uploads.get(chunk.uploadId);
          if (upload === undefined) throw new ConnectError("unknown upload", Code.NotFound);
          if (received === 0) fake.uploadStreams.push(Number(chunk.offset));
          if (chunk.data.length > fake.maxChunkBytes) {
            throw new ConnectError("oversized chunk", Code.InvalidArgument);
          }
          if (Number(chunk.offset) !== upload.bytes.length) {
            throw new ConnectError("wrong offset", Code.FailedPrecondition);
          }
          if (!Buffer.from(sha256(chunk.data)).equals(Buffer.from(chunk.sha256))) {
            throw new ConnectError("bad checksum", Code.InvalidArgument);
          }
          upload.bytes = Buffer.concat([upload.bytes, chunk.data]);
          received += 1;
          if (cutAfter !== undefined && received >= cutAfter) {
            throw new ConnectError("deadline", Code.DeadlineExceeded);
          }
        }
        return { committedOffset: BigInt(upload?.bytes.length ?? 0) };
      },
      commitUpload(req) {
        const upload = uploads.get(req.uploadId);
        if (upload === undefined) throw new ConnectError("unknown upload", Code.NotFound);
        const actual = `sha256:${createHash("sha256").update(upload.bytes).digest("hex")}`;
        if (actual !== req.digest || upload.bytes.length !== Number(req.sizeBytes)) {
          throw new ConnectError("digest mismatch", Code.FailedPrecondition);
        }
        upload.artifact ??= makeArtifact(upload.name, upload.mediaType, upload.bytes, actual);
        return { artifact: upload.artifact };
      },
      async *downloadArtifact(req) {
        const artifact = artifacts.get(req.artifactId);
        const content = contents.get(req.artifactId);
        if (artifact === undefined || content === undefined) {
          throw new ConnectError("unknown artifact", Code.NotFound);
        }
        fake.downloadOffsets.push(Number(req.offset));
        const cutAfter = fake.cutDownloadsAfterChunks.shift();
        let sent = 0;
        for (let offset = Number(req.offset); offset < content.length; ) {
          const data = content.subarray(offset, offset + fake.maxChunkBytes);
          const sha = sha256(data);
          if (fake.corruptDownloadChunks > 0) {
            fake.corruptDownloadChunks -= 1;
            sha[0] = (sha[0] ?? 0) ^ 0xff;
          }
          yield {
            offset: BigInt(offset),
            data,
            sha256: sha,
            ...(sent === 0 ? { artifact } : {}),
          };
          offset += data.length;
          sent += 1;
          if (cutAfter !== undefined && sent >= cutAfter) {
            throw new ConnectError("deadline", Code.DeadlineExceeded);
          }
        }
        if (sent === 0) yield { offset: req.offset, artifact, sha256: sha256(new Uint8Array()) };
      },
      getArtifact(req) {
        const artifact = artifacts.get(req.artifactId);
        if (artifact === undefined) throw new ConnectError("unknown artifact", Code.NotFound);
        return { artifact };
      },
    });
  };
  const server = http2.createServer(connectNodeAdapter({ routes }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  const client = createClient(
    ArtifactService,
    createConnectTransport({ baseUrl, httpVersion: "2", sessionManager }),
  );
  return Object.assign(fake, {
    client,
    close: () =>
      new Promise<void>((resolve) => {
        sessionManager.abort();
        server.close(() => resolve());
      }),
  });
}
