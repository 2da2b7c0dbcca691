/**
 * Completion validations checked off the event loop: each check (decode, the terms' signing
 * bytes, three or more ed25519 verifications) runs on a worker thread with
 * `verifyValidationBundle` of @tessera/identity/validation-bundle, the function the registry uses.
 *
 * Why workers: a release verifies at least M validator signatures and the node's completion
 * signature, ~0.1 ms of CPU each here. node:crypto's asynchronous verify offloads the arithmetic
 * but still costs the event loop about half of it per call; one message per bundle to a worker
 * costs a few microseconds, leaving the event loop to the ledger's batches.
 *
 * The worker's code is a small script that imports the compiled JS modules by resolved URL, so
 * it runs the same under `tsx` (tests) and from `dist` (production) without a build step of its
 * own.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { fromBinary } from "@bufbuild/protobuf";
import {
  type BundleVerdict,
  verifyValidationBundleAsync,
} from "@tessera/identity/validation-bundle";
import { CompletionValidationSchema } from "@tessera/proto/tessera/common/v1/common_pb.js";

/** Checks encoded CompletionValidations against a validator set. */
export interface BundleVerifier {
  /**
   * The verdict of `verifyValidationBundle` on the CompletionValidation encoded in `bundle`.
   * Rejects only when the worker failed (it is replaced for the next call).
   */
  verify(bundle: Uint8Array, validators: readonly string[], quorum: number): Promise<BundleVerdict>;
  /** Stops the workers; pending checks reject. Safe to call twice. */
  close(): Promise<void>;
}

/** Options of {@link createBundleVerifier}. */
export interface BundleVerifierOptions {
  /**
   * Worker threads. Defaults to the number of CPUs minus one, at least one. 0 checks in this
   * thread instead (with node:crypto's thread-pool verification), starting no worker.
   */
  readonly threads?: number | undefined;
}

interface Pending {
  readonly resolve: (verdict: BundleVerdict) => void;
  readonly reject: (error: unknown) => void;
}

const WORKER_SCRIPT = `
const { parentPort, workerData } = require("node:worker_threads");
(async () => {
  const { fromBinary } = await import(workerData.protobuf);
  const { CompletionValidationSchema } = await import(workerData.common);
  const { verifyValidationBundle } = await import(workerData.bundle);
  parentPort.on("message", ({ id, bundle, validators, quorum }) => {
    let verdict;
    try {
      verdict = verifyValidationBundle(fromBinary(CompletionValidationSchema, bundle), {
        validators,
        quorum,
      });
    } catch (error) {
      verdict = { valid: false, reason: "the bundle cannot be checked: " + (error && error.message) };
    }
    parentPort.postMessage({ id, verdict });
  });
})();
`;

let shared: BundleVerifier | undefined;

/**
 * The process-wide verifier with the default thread count, made on first use. Checking a bundle
 * keeps no state, so every ledger of a process shares it; its idle workers never keep the process
 * alive, and it is never closed.
 */
export function sharedBundleVerifier(): BundleVerifier {
  shared ??= createBundleVerifier();
  return shared;
}

/** A pool of verifier workers, each started on first use, used round-robin. */
export function createBundleVerifier(options: BundleVerifierOptions = {}): BundleVerifier {
  if (options.threads === 0) {
    return {
      verify: (bundle, validators, quorum) =>
        verifyValidationBundleAsync(fromBinary(CompletionValidationSchema, bundle), {
          validators,
          quorum,
        }),
      close: async () => {},
    };
  }
  const threads = Math.max(1, options.threads ?? availableParallelism() - 1);
  const workerData = {
    protobuf: import.meta.resolve("@bufbuild/protobuf"),
    common: import.meta.resolve("@tessera/proto/tessera/common/v1/common_pb.js"),
    bundle: import.meta.resolve("@tessera/identity/validation-bundle"),
  };
  const slots: Array<{ worker: Worker; pending: Map<number, Pending> } | undefined> = Array.from(
    { length: threads },
    () => undefined,
  );
  let nextId = 0;
  let nextSlot = 0;
  let closed = false;

  function slot(index: number) {
    const existing = slots[index];
    if (existing !== undefined) return existing;
    const worker = new Worker(WORKER_SCRIPT, { eval: true, workerData });
    const pending = new Map<number, Pending>();
    const created = { worker, pending };
    const fail = (error: unknown) => {
      if (slots[index] === created) slots[index] = undefined;
      for (const waiting of pending.values()) waiting.reject(error);
      pending.clear();
    };
    worker.on("message", ({ id, verdict }: { id: number; verdict: BundleVerdict }) => {
      const waiting = pending.get(id);
      pending.delete(id);
      if (pending.size === 0) worker.unref();
      waiting?.resolve(verdict);
    });
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`bundle verifier worker exited with code ${code}`)));
    // An idle worker must not keep the process alive, a busy one must (its caller awaits it):
    // referenced only while checks are pending. (After the listeners: adding one refs it.)
    worker.unref();
    slots[index] = created;
    return created;
  }

  return {
    verify(bundle, validators, quorum) {
      if (closed) return Promise.reject(new Error("the bundle verifier is closed"));
      const target = slot(nextSlot);
      nextSlot = (nextSlot + 1) % threads;
      const id = nextId++;
      return new Promise<BundleVerdict>((resolve, reject) => {
        if (target.pending.size === 0) target.worker.ref();
        target.pending.set(id, { resolve, reject });
        target.worker.postMessage({ id, bundle, validators: [...validators], quorum });
      });
    },
    async close() {
      closed = true;
      await Promise.all(
        slots.map(async (entry, index) => {
          slots[index] = undefined;
          await entry?.worker.terminate();
        }),
      );
    },
  };
}
