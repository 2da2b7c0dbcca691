/**
 * A client of the job server: its JobService (jobs) and ArtifactService (inputs and outputs) on
 * one HTTP/2 session, every call signed by the caller's key for the job server's address.
 */
import { type Client, createClient } from "@connectrpc/connect";
import type { KeyPair } from "@tessera/identity/keys";
import { ArtifactService } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { JobService } from "@tessera/proto/tessera/job/v1/job_service_pb.js";
import { openTransport } from "./service-client.js";

/** Where the job server is and who calls it. */
export interface JobServerClientOptions {
  /** The job server's base URL, e.g. `http://127.0.0.1:7001` (the devnet's). */
  readonly baseUrl: string;
  /** The job server's own address (`tsr1…`): the target every call is signed for. */
  readonly address: string;
  /** The caller: owner of the jobs it submits and of the artifacts it uploads. */
  readonly keyPair: KeyPair;
  /** Default deadline of each unary call; default 30 s. Streams set their own. */
  readonly timeoutMs?: number | undefined;
}

/** The job server's client-side services, sharing one session and one nonce source. */
export interface JobServerClient {
  readonly jobs: Client<typeof JobService>;
  readonly artifacts: Client<typeof ArtifactService>;
  /** The job server's address (the escrow arbiter of paid jobs). */
  readonly address: string;
  /** The caller's address. */
  readonly callerAddress: string;
  /** Closes the session (and any call still on it); safe to call twice. */
  close(): void;
}

/**
 * Opens a {@link JobServerClient}. Nothing is sent until the first call.
 * @throws InvalidServiceUrlError for a base URL that is not http(s); TypeError for a bad address.
 */
export function openJobServerClient(options: JobServerClientOptions): JobServerClient {
  const { transport, close } = openTransport({
    baseUrl: options.baseUrl,
    signer: { keyPair: options.keyPair, target: options.address },
    timeoutMs: options.timeoutMs,
  });
  return {
    jobs: createClient(JobService, transport),
    artifacts: createClient(ArtifactService, transport),
    address: options.address,
    callerAddress: options.keyPair.address,
    close,
  };
}
