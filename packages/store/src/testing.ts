/**
 * Runs one test suite against both stores, so a service proves that its code behaves the same on
 * SQLite and PostgreSQL. For test files only (it registers node:test suites).
 *
 * PostgreSQL comes from `TEST_DATABASE_URL` (default {@link DEFAULT_TEST_DATABASE_URL}). When it
 * cannot be reached, the PostgreSQL half is reported as a skipped test whose reason starts with
 * "PostgreSQL not reachable at …", plus a banner on stderr; with `TESSERA_REQUIRE_POSTGRES=1`
 * (CI) it is a failing test instead. These two variables are read here because this module only
 * runs under the test runner; services read their configuration elsewhere.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import pg from "pg";
import { openStore, type Store, type StoreDialect, type StoreOptions } from "./store.js";

/** The PostgreSQL the suites use when `TEST_DATABASE_URL` is not set. */
export const DEFAULT_TEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/test";

/** What a store opened by {@link StoreBackend.open} needs besides the backend's location. */
export type BackendStoreOptions = Omit<
  StoreOptions,
  "dataDir" | "databaseUrl" | "schema" | "fileName"
> & {
  /**
   * A separate database inside the suite run's scratch space: its own SQLite file, or its own
   * PostgreSQL schema. Lets tests that need a fresh database (or their own migrations) not see
   * each other's tables. Lower-case letters, digits and `_`, at most 20. Defaults to "main".
   */
  readonly space?: string;
};

/** Where one space of a suite run keeps its data: a file in a scratch directory, or a schema. */
export interface StoreLocation {
  readonly dataDir: string;
  readonly fileName: string;
  readonly databaseUrl: string | undefined;
  readonly schema: string | undefined;
}

/** One store backend as a suite sees it. Use it inside tests and hooks, not while defining them. */
export interface StoreBackend {
  readonly dialect: StoreDialect;
  /**
   * Opens a store in this suite run's scratch space (the same `space` gives the same file or
   * schema, so a reopened store sees what an earlier one wrote). Stores still open when the test
   * ends are closed for you (so suites do not pile up PostgreSQL connections), and the scratch
   * space is removed when the suite ends.
   */
  open<DB>(options: BackendStoreOptions): Promise<Store<DB>>;
  /** Where `space` (default "main") lives, e.g. to configure a spawned service. */
  location(space?: string): StoreLocation;
}

/** Overrides for the environment variables {@link describeEachStore} reads. */
export interface EachStoreOptions {
  /** Defaults to `TEST_DATABASE_URL`, then {@link DEFAULT_TEST_DATABASE_URL}. */
  readonly databaseUrl?: string;
  /** Fail instead of skip when PostgreSQL is unreachable. Defaults to `TESSERA_REQUIRE_POSTGRES=1`. */
  readonly requirePostgres?: boolean;
  /** How long the reachability probe waits. Defaults to 3,000 ms. */
  readonly probeTimeoutMs?: number;
}

/**
 * Defines `suite` twice: as "<title> [sqlite]" over a temporary directory, and as
 * "<title> [postgres]" in a schema unique to this run (dropped afterwards). Await it at the top
 * level of the test file: it probes PostgreSQL before defining the second half.
 */
export async function describeEachStore(
  title: string,
  suite: (backend: StoreBackend) => void,
  options: EachStoreOptions = {},
): Promise<void> {
  describeOnSqlite(title, suite);
  await describeOnPostgres(title, suite, options);
}

/** Defines `suite` as "<title> [sqlite]" over a temporary directory removed afterwards. */
export function describeOnSqlite(title: string, suite: (backend: StoreBackend) => void): void {
  describe(`${title} [sqlite]`, () => {
    let dataDir: string | undefined;
    const backend = new ScratchBackend("sqlite", (space) => {
      if (dataDir === undefined) {
        throw new Error("the store backend is ready only inside tests and hooks of its suite");
      }
      return { dataDir, fileName: `${space}.sqlite`, databaseUrl: undefined, schema: undefined };
    });
    before(async () => {
      dataDir = await mkdtemp(join(tmpdir(), "tessera-store-"));
    });
    afterEach(() => backend.closeAll());
    after(async () => {
      await backend.closeAll();
      if (dataDir !== undefined) {
        await rm(dataDir, { recursive: true, force: true });
      }
    });
    suite(backend);
  });
}

/**
 * Defines `suite` as "<title> [postgres]" in a fresh schema, or, when PostgreSQL cannot be
 * reached, a skipped (or, if required, failing) test that says so.
 */
export async function describeOnPostgres(
  title: string,
  suite: (backend: StoreBackend) => void,
  options: EachStoreOptions = {},
): Promise<void> {
  const databaseUrl =
    options.databaseUrl ?? process.env.TEST_DATABASE_URL ?? DEFAULT_TEST_DATABASE_URL;
  const requirePostgres = options.requirePostgres ?? process.env.TESSERA_REQUIRE_POSTGRES === "1";
  const problem = await probePostgres(databaseUrl, options.probeTimeoutMs ?? 3_000);
  const name = `${title} [postgres]`;
  if (problem !== undefined) {
    const reason = `PostgreSQL not reachable at ${redactUrl(databaseUrl)} (${problem})`;
    if (requirePostgres) {
      test(name, () => {
        throw new Error(`${reason}; TESSERA_REQUIRE_POSTGRES=1 requires it`);
      });
      return;
    }
    const skipReason = `${reason}: the PostgreSQL suite did NOT run (set TEST_DATABASE_URL, or TESSERA_REQUIRE_POSTGRES=1 to fail)`;
    console.warn(`\n*** SKIPPED "${name}": ${skipReason} ***\n`);
    test(name, { skip: skipReason }, () => {});
    return;
  }
  describe(name, () => {
    const run = `tessera_test_${process.pid}_${randomBytes(6).toString("hex")}`;
    const backend = new ScratchBackend("postgres", (space) => ({
      dataDir: join(tmpdir(), "tessera-store-unused"),
      fileName: "unused.sqlite",
      databaseUrl,
      schema: `${run}_${space}`,
    }));
    afterEach(() => backend.closeAll());
    after(async () => {
      await backend.closeAll();
      const schemas = backend.locations().map((location) => location.schema);
      await withClient(databaseUrl, 10_000, async (client) => {
        for (const schema of schemas) {
          await client.query(`drop schema if exists ${schema} cascade`);
        }
      });
    });
    suite(backend);
  });
}

const SPACE_NAME = /^[a-z0-9_]{1,20}$/;

class ScratchBackend implements StoreBackend {
  readonly dialect: StoreDialect;
  readonly #locate: (space: string) => StoreLocation;
  readonly #used = new Map<string, StoreLocation>();
  readonly #opened: Array<{ close(): Promise<void> }> = [];

  constructor(dialect: StoreDialect, locate: (space: string) => StoreLocation) {
    this.dialect = dialect;
    this.#locate = locate;
  }

  location(space = "main"): StoreLocation {
    if (!SPACE_NAME.test(space)) {
      throw new Error(`store space must match ${SPACE_NAME}, got "${space}"`);
    }
    const location = this.#used.get(space) ?? this.#locate(space);
    this.#used.set(space, location);
    return location;
  }

  /** Every location handed out so far. */
  locations(): StoreLocation[] {
    return [...this.#used.values()];
  }

  async open<DB>(options: BackendStoreOptions): Promise<Store<DB>> {
    const { space, ...storeOptions } = options;
    const { dataDir, fileName, databaseUrl, schema } = this.location(space);
    const store = await openStore<DB>({ ...storeOptions, dataDir, fileName, databaseUrl, schema });
    this.#opened.push(store);
    return store;
  }

  async closeAll(): Promise<void> {
    const opened = this.#opened.splice(0);
    await Promise.all(opened.map((store) => store.close()));
  }
}

/** Why `databaseUrl` cannot be used right now, or undefined if a query went through. */
async function probePostgres(databaseUrl: string, timeoutMs: number): Promise<string | undefined> {
  try {
    await withClient(databaseUrl, timeoutMs, (client) => client.query("select 1"));
    return undefined;
  } catch (error) {
    return describeError(error);
  }
}

async function withClient<T>(
  databaseUrl: string,
  timeoutMs: number,
  use: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({
    connectionString: databaseUrl,
    connectionTimeoutMillis: timeoutMs,
  });
  client.on("error", () => {
    // A broken connection also rejects the pending call below; that is where it is reported.
  });
  try {
    await client.connect();
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return error.message || (typeof code === "string" ? code : error.name);
  }
  return String(error);
}

function redactUrl(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    if (url.password !== "") {
      url.password = "***";
    }
    return url.toString();
  } catch {
    return "<unparsable TEST_DATABASE_URL>";
  }
}
