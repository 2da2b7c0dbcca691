// Test-only: a real job-server-style server (port 0, the runtime's default limits) serving
// ArtifactService behind the verifying interceptor, over a store from describeEachStore, and
// signed clients for it.

import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor, createVerifyingInterceptor } from "@tessera/auth";
import { generateKeyPair, type KeyPair } from "@tessera/identity/keys";
import {
  type Artifact,
  ArtifactService,
} from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import {
  createLogger,
  type Logger,
  parseConfig,
  serverConfigSpec,
  serverOptionsFromConfig,
  startServiceServer,
} from "@tessera/runtime";
import {
  createNonceStore,
  type NonceStoreTables,
  nonceStoreMigrations,
  type Store,
} from "@tessera/store";
import type { StoreBackend } from "@tessera/store/testing";
import { type ArtifactServiceDeps, createArtifactService } from "./artifact-service.js";
import {
  type ArtifactStore,
  type ArtifactStoreOptions,
  createArtifactStore,
} from "./artifact-store.js";
import { artifactMigrations } from "./migrations.js";
import type { ArtifactTables } from "./tables.js";

/** The database of these tests: the artifact tables and the nonce store's. */
export type TestTables = ArtifactTables & NonceStoreTables;

/** Protocol version 1.0.0 for requests built by hand. */
export const V1 = { major: 1, minor: 0, patch: 0 };

/** A silent logger for stores and servers under test. */
export const silentLogger: Logger = createLogger({ service: "job-server-test", level: "silent" });

/** Opens a fresh store (its own space) with the artifact and nonce migrations. */
export function openTestStore(backend: StoreBackend, space: string): Promise<Store<TestTables>> {
  return backend.open<TestTables>({
    space,
    migrations: { ...nonceStoreMigrations, ...artifactMigrations },
  });
}

/** A running server and what the tests look at. */
export interface ArtifactHarness {
  readonly url: string;
  readonly serverKey: KeyPair;
  readonly store: Store<TestTables>;
  readonly artifacts: ArtifactStore;
  /** `<dataDir>` of the artifact store (bytes under `<dataDir>/artifacts`). */
  readonly dataDir: string;
  /** A client signing as `keyPair` (one per key, so its nonces never collide). */
  clientFor(keyPair: KeyPair): Client<typeof ArtifactService>;
  /** Artifact rows in the store. */
  artifactCount(): Promise<number>;
  /** Files under `<dataDir>/artifacts/sha256`. */
  blobFiles(): Promise<string[]>;
  /** Files under `<dataDir>/artifacts/uploads`. */
  partialFiles(): Promise<string[]>;
}

/** Options of {@link withArtifactServer}. */
export interface HarnessOptions {
  readonly space: string;
  readonly canRead?: ArtifactServiceDeps["canRead"];
  readonly canUpload?: ArtifactServiceDeps["canUpload"];
  readonly store?: Partial<Omit<ArtifactStoreOptions<TestTables>, "store" | "dataDir" | "logger">>;
}

/**
 * Runs `body` against a real server on port 0 with the runtime's default limits (4 MiB messages,
 * 30 s default deadline), then closes it and removes its data directory.
 */
export async function withArtifactServer(
  backend: StoreBackend,
  options: HarnessOptions,
  body: (harness: ArtifactHarness) => Promise<void>,
): Promise<void> {
  const serverKey = generateKeyPair();
  const store = await openTestStore(backend, options.space);
  const dataDir = await mkdtemp(join(tmpdir(), "tessera-artifacts-"));
  const artifacts = await createArtifactStore({
    store,
    dataDir,
    logger: silentLogger,
    sweepIntervalMs: 0,
    ...options.store,
  });
  const defaults = serverOptionsFromConfig(parseConfig(serverConfigSpec, { PORT: "0" }));
  const server = await startServiceServer({
    service: "job-server",
    logger: silentLogger,
    host: "127.0.0.1",
    port: 0,
    limits: defaults.limits,
    files: [ArtifactService.file],
    routes: (router) => {
      router.service(
        ArtifactService,
        createArtifactService({
          artifacts,
          canRead: options.canRead ?? (() => false),
          canUpload: options.canUpload,
        }),
      );
    },
    interceptors: [
      createVerifyingInterceptor({
        selfAddress: serverKey.address,
        nonceStore: createNonceStore(store),
      }),
    ],
    onClosed: () => artifacts.close(),
  });
  const clients = new Map<string, Client<typeof ArtifactService>>();
  const sessions: Http2SessionManager[] = [];
  const listFiles = async (dir: string): Promise<string[]> => {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
  };
  const harness: ArtifactHarness = {
    url: server.url,
    serverKey,
    store,
    artifacts,
    dataDir,
    clientFor(keyPair) {
      let client = clients.get(keyPair.address);
      if (client === undefined) {
        const sessionManager = new Http2SessionManager(server.url);
        sessions.push(sessionManager);
        client = createClient(
          ArtifactService,
          createConnectTransport({
            baseUrl: server.url,
            httpVersion: "2",
            sessionManager,
            interceptors: [createSigningInterceptor({ keyPair, target: serverKey.address })],
          }),
        );
        clients.set(keyPair.address, client);
      }
      return client;
    },
    async artifactCount() {
      const rows = await store.db.selectFrom("artifact").select("artifact_id").execute();
      return rows.length;
    },
    blobFiles: () => listFiles(join(dataDir, "artifacts", "sha256")),
    partialFiles: () => listFiles(join(dataDir, "artifacts", "uploads")),
  };
  try {
    await body(harness);
  } finally {
    for (const session of sessions) session.abort();
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** The "sha256:<hex>" and artifact id a test expects of `artifact`. */
export function describeArtifact(artifact: Artifact | undefined): {
  id: string;
  digest: string;
  size: bigint;
  uri: string;
} {
  return {
    id: artifact?.artifactId ?? "",
    digest: artifact?.content?.digest ?? "",
    size: artifact?.content?.sizeBytes ?? -1n,
    uri: artifact?.content?.uri ?? "",
  };
}
