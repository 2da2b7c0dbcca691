/**
 * Durable approvals, so validation requests are idempotent on their request id across restarts
 * and replicas: a preprocessing approval is returned again while it is unexpired, a completion
 * verdict forever. Rows live in the registry's store (SQLite or PostgreSQL).
 */

import { fromBinary } from "@bufbuild/protobuf";
import { bytesEqual } from "@tessera/identity/hash";
import { PreprocessingValidationSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { Kysely, Migration, Store } from "@tessera/store";

/** The table the approval store owns. Add it to the registry's database interface. */
export interface ValidationTables {
  validation_approvals: {
    /** "preprocessing" or "completion". */
    kind: string;
    request_id: string;
    /** Hex SHA3-256 of what was asked, to tell a repeat from another request with the same id. */
    request_hash: string;
    /** Base64 of the bundle's binary encoding. */
    bundle: string;
    /** ISO-8601 UTC; null for completions, which do not expire. */
    expires_at: string | null;
    created_at: string;
  };
}

/**
 * The approval store's migrations. Merge them into the `migrations` given to `openStore` of the
 * registry's database: `{ ...nonceStoreMigrations, ...registryMigrations, ...validationMigrations }`.
 */
export const validationMigrations: Readonly<Record<string, Migration>> = {
  "validation/0001-create-validation-approvals": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("validation_approvals")
        .addColumn("kind", "text", (col) => col.notNull())
        .addColumn("request_id", "text", (col) => col.notNull())
        .addColumn("request_hash", "text", (col) => col.notNull())
        .addColumn("bundle", "text", (col) => col.notNull())
        .addColumn("expires_at", "text")
        .addColumn("created_at", "text", (col) => col.notNull())
        .addPrimaryKeyConstraint("validation_approvals_pk", ["kind", "request_id"])
        .execute();
    },
  },
};

/** Which approval. */
export type ApprovalKind = "preprocessing" | "completion";

/** One stored approval. */
export interface StoredApproval {
  readonly requestHash: string;
  /** The bundle's binary encoding. */
  readonly bundle: Uint8Array;
  /** Undefined for completions. */
  readonly expiresAt: Date | undefined;
}

/** Approvals by kind and request id. */
export interface ApprovalStore {
  /** The approval stored for the request id, expired or not, or undefined. */
  get(kind: ApprovalKind, requestId: string): Promise<StoredApproval | undefined>;
  /**
   * Stores `approval` unless a live one (unexpired, or a completion) is already stored for the
   * request id, and returns the one that is stored now: `approval`, or the earlier one when two
   * requests raced.
   */
  put(
    kind: ApprovalKind,
    requestId: string,
    approval: StoredApproval,
    now: Date,
  ): Promise<StoredApproval>;
  /**
   * Replaces `previous` (the approval stored now for the request id) with `approval`, and returns
   * the one stored afterwards: `approval`, or whatever a concurrent request stored first when
   * `previous` is no longer the stored one.
   */
  replace(
    kind: ApprovalKind,
    requestId: string,
    previous: StoredApproval,
    approval: StoredApproval,
  ): Promise<StoredApproval>;
  /**
   * The latest expiry of the approvals `validator` signed that are still open: preprocessing
   * approvals not expired at `now` whose request has no completion verdict yet (a completion
   * verdict is final when signed). Undefined when none is open.
   */
  openUntil(validator: string, now: Date): Promise<Date | undefined>;
}

/** An {@link ApprovalStore} over `store`, whose migrations must include {@link validationMigrations}. */
export function createApprovalStore<DB extends ValidationTables>(store: Store<DB>): ApprovalStore {
  // The store's DB type includes ours; Kysely cannot see that through the generic.
  const typed = store as unknown as Store<ValidationTables>;
  /** The row of `kind` and `requestId`, locked for the rest of the transaction. */
  const lockedRow = (trx: Kysely<ValidationTables>, kind: ApprovalKind, requestId: string) =>
    typed
      .forUpdate(
        trx
          .selectFrom("validation_approvals")
          .selectAll()
          .where("kind", "=", kind)
          .where("request_id", "=", requestId),
      )
      .executeTakeFirst();
  return {
    async get(kind, requestId) {
      const row = await typed.db
        .selectFrom("validation_approvals")
        .selectAll()
        .where("kind", "=", kind)
        .where("request_id", "=", requestId)
        .executeTakeFirst();
      return row === undefined ? undefined : fromRow(row);
    },
    async put(kind, requestId, approval, now) {
      return typed.transaction(async (trx) => {
        const existing = await lockedRow(trx, kind, requestId);
        if (existing !== undefined) {
          const stored = fromRow(existing);
          if (stored.expiresAt === undefined || stored.expiresAt > now) return stored;
        }
        const row = {
          kind,
          request_id: requestId,
          request_hash: approval.requestHash,
          bundle: Buffer.from(approval.bundle).toString("base64"),
          expires_at: approval.expiresAt?.toISOString() ?? null,
          created_at: now.toISOString(),
        };
        if (existing !== undefined) {
          // Expired, and locked by the select above: replace it.
          await trx
            .updateTable("validation_approvals")
            .set(row)
            .where("kind", "=", kind)
            .where("request_id", "=", requestId)
            .execute();
          return approval;
        }
        // Nothing to lock yet: a concurrent insert of the same id waits for ours (or we for it),
        // and the loser keeps the winner's approval.
        const inserted = await trx
          .insertInto("validation_approvals")
          .values(row)
          .onConflict((conflict) => conflict.columns(["kind", "request_id"]).doNothing())
          .executeTakeFirst();
        if ((inserted.numInsertedOrUpdatedRows ?? 0n) > 0n) return approval;
        const winner = await trx
          .selectFrom("validation_approvals")
          .selectAll()
          .where("kind", "=", kind)
          .where("request_id", "=", requestId)
          .executeTakeFirstOrThrow();
        return fromRow(winner);
      });
    },
    async replace(kind, requestId, previous, approval) {
      return typed.transaction(async (trx) => {
        const current = await lockedRow(trx, kind, requestId);
        const stored = current === undefined ? undefined : fromRow(current);
        if (stored === undefined || !bytesEqual(stored.bundle, previous.bundle)) {
          return stored ?? approval;
        }
        await trx
          .updateTable("validation_approvals")
          .set({
            request_hash: approval.requestHash,
            bundle: Buffer.from(approval.bundle).toString("base64"),
            expires_at: approval.expiresAt?.toISOString() ?? null,
          })
          .where("kind", "=", kind)
          .where("request_id", "=", requestId)
          .execute();
        return approval;
      });
    },
    async openUntil(validator, now) {
      const rows = await typed.db
        .selectFrom("validation_approvals as p")
        .select(["p.bundle", "p.expires_at"])
        .where("p.kind", "=", "preprocessing")
        .where("p.expires_at", ">", now.toISOString())
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom("validation_approvals as c")
                .select("c.request_id")
                .where("c.kind", "=", "completion")
                .whereRef("c.request_id", "=", "p.request_id"),
            ),
          ),
        )
        .execute();
      let latest: Date | undefined;
      for (const row of rows) {
        const bundle = fromBinary(
          PreprocessingValidationSchema,
          new Uint8Array(Buffer.from(row.bundle, "base64")),
        );
        if (!bundle.validatorSignatures.some((s) => s.validatorAddress === validator)) continue;
        // ISO-8601 UTC strings of one format order like the times they name.
        const expiresAt = new Date(row.expires_at as string);
        if (latest === undefined || expiresAt > latest) latest = expiresAt;
      }
      return latest;
    },
  };
}

function fromRow(row: ValidationTables["validation_approvals"]): StoredApproval {
  return {
    requestHash: row.request_hash,
    bundle: new Uint8Array(Buffer.from(row.bundle, "base64")),
    expiresAt: row.expires_at === null ? undefined : new Date(row.expires_at),
  };
}
