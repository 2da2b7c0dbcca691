/**
 * The re-execution hook of completion validation: a validator (or the registry) that can run a
 * piece of work again plugs a {@link CompletionExecutor} into a {@link CompletionExecutorRegistry};
 * completion checks ask the registry for one that supports the work and compare its verdict.
 * Issue 3 ships the interface and the registry only; the jobs and gateway issues plug real
 * executors (ONNX inference, training replays).
 */
import type { ExecutionEvidence } from "@tessera/proto/tessera/registry/v1/validation_pb.js";

/** A finished piece of work to check by running it again. */
export interface ReexecutionTask {
  /** The inference task's or job's id. */
  readonly requestId: string;
  /** The model the work ran (from the approved terms). */
  readonly modelId: string;
  /** The subnet of the work. */
  readonly subnetId: bigint;
  /** The node that claims the result. */
  readonly computeNodeAddress: string;
  /** SHA-256 of the result bytes the node signed (32 bytes). */
  readonly resultHash: Uint8Array;
  /** The input (and result) supplied with the validation request. */
  readonly evidence: ExecutionEvidence;
}

/** An executor's finding. */
export interface ReexecutionVerdict {
  /** Whether running the work again agrees with the node's result. */
  readonly agrees: boolean;
  /** Why not, in words (never payload bytes); shown in the verdict. */
  readonly reason?: string | undefined;
}

/**
 * Something that can run a kind of work again. Executors may compare within a tolerance
 * (floating-point results need not be bit-exact), which is why they return a verdict rather than
 * a hash.
 */
export interface CompletionExecutor {
  /** Short name for logs and verdict reasons, e.g. "onnx-cpu". */
  readonly name: string;
  /** Whether this executor can re-execute the task (has the model, understands the input). */
  supports(task: ReexecutionTask): boolean;
  /**
   * Runs the work again and judges the node's result. Throws when it cannot reach a verdict
   * (missing input, model not available); the validator then refuses to sign (UNAVAILABLE).
   * Must stop when `signal` aborts.
   */
  reexecute(task: ReexecutionTask, signal: AbortSignal): Promise<ReexecutionVerdict>;
}

/** The executors a process offers, asked in registration order. */
export interface CompletionExecutorRegistry {
  /** Adds an executor; returns a function that removes it again. */
  register(executor: CompletionExecutor): () => void;
  /** The first registered executor that supports `task`, or undefined. */
  find(task: ReexecutionTask): CompletionExecutor | undefined;
  /** Names of the registered executors, in order. */
  names(): readonly string[];
}

/** A registry holding `executors` (default none: completions are judged on signatures and hashes). */
export function createCompletionExecutorRegistry(
  executors: Iterable<CompletionExecutor> = [],
): CompletionExecutorRegistry {
  const list: CompletionExecutor[] = [...executors];
  return {
    register(executor) {
      list.push(executor);
      return () => {
        const at = list.indexOf(executor);
        if (at >= 0) list.splice(at, 1);
      };
    },
    find(task) {
      return list.find((executor) => executor.supports(task));
    },
    names() {
      return list.map((executor) => executor.name);
    },
  };
}
