/**
 * ValidationService handlers (the registry role): proto in, the validation engine decides, proto
 * out. Also the Connect adapter the engine uses to reach each validator's ValidatorService with
 * signed calls, and the one error mapping of validation.
 */
import { create } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type ServiceImpl,
} from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createSigningInterceptor, requireCaller } from "@tessera/auth";
import type { KeyPair } from "@tessera/identity/keys";
import {
  type ValidatorSignature,
  ValidatorSignatureSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";
import type { ValidatorInfo } from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  RequestCompletionValidationResponseSchema,
  RequestPreprocessingValidationResponseSchema,
  type ValidationService,
} from "@tessera/proto/tessera/registry/v1/validation_service_pb.js";
import { ValidatorService } from "@tessera/proto/tessera/registry/v1/validator_service_pb.js";
import { DirectoryError, type DirectoryErrorKind } from "./directory/errors.js";
import { ValidationError, type ValidationErrorKind } from "./validation/errors.js";
import type { ValidatorReply } from "./validation/fan-out.js";
import { endpointUrl } from "./validation/route.js";
import type { ValidationEngine, ValidatorCaller } from "./validation/validation-engine.js";

/** What {@link createValidationService} needs. */
export interface ValidationServiceDeps {
  /** The registry role's engine (createValidationEngine). */
  readonly engine: ValidationEngine;
}

/**
 * ValidationService: every RPC needs a signed caller (@tessera/auth's verifying interceptor);
 * RequestPreprocessingValidation's caller must be the work's gateway.
 */
export function createValidationService(
  deps: ValidationServiceDeps,
): ServiceImpl<typeof ValidationService> {
  const { engine } = deps;
  return {
    async requestPreprocessingValidation(request, ctx) {
      const caller = requireCaller(ctx);
      try {
        const validation = await engine.requestPreprocessing(request, caller, ctx.signal);
        return create(RequestPreprocessingValidationResponseSchema, { validation });
      } catch (error) {
        throw toConnectError(error);
      }
    },
    async requestCompletionValidation(request, ctx) {
      const caller = requireCaller(ctx);
      try {
        const validation = await engine.requestCompletion(request, caller, ctx.signal);
        return create(RequestCompletionValidationResponseSchema, { validation });
      } catch (error) {
        throw toConnectError(error);
      }
    },
  };
}

const validationCodes: Readonly<Record<ValidationErrorKind, Code>> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  resource_exhausted: Code.ResourceExhausted,
};

const directoryCodes: Readonly<Record<DirectoryErrorKind, Code>> = {
  invalid: Code.InvalidArgument,
  bad_signature: Code.Unauthenticated,
  not_found: Code.NotFound,
  conflict: Code.AlreadyExists,
  stale: Code.FailedPrecondition,
  failed_precondition: Code.FailedPrecondition,
  banned: Code.PermissionDenied,
  permission_denied: Code.PermissionDenied,
  unavailable: Code.Unavailable,
};

/**
 * The Connect error for anything validation throws: ValidationError and DirectoryError by kind,
 * a ConnectError as is, an aborted call as deadline_exceeded; anything else is internal with the
 * original as `cause` (logged by the runtime, never sent).
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof ValidationError)
    return new ConnectError(error.message, validationCodes[error.kind]);
  if (error instanceof DirectoryError)
    return new ConnectError(error.message, directoryCodes[error.kind]);
  if (error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError")) {
    return new ConnectError("the call ended before validation finished", Code.DeadlineExceeded);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** Options of {@link createValidatorCaller}. */
export interface ValidatorCallerOptions {
  /** The registry's key: every call to a validator is signed with it. */
  readonly keyPair: KeyPair;
  /** Nonce source shared with the registry's other signing clients; default a new one. */
  readonly nonceSource?: (() => bigint) | undefined;
  /** Deadline sent with each call, in milliseconds (VALIDATOR_TIMEOUT_MS); default 5000. */
  readonly timeoutMs?: number | undefined;
}

/** A {@link ValidatorCaller} with connections to close. */
export interface ClosableValidatorCaller extends ValidatorCaller {
  /** Closes every connection to validators. Safe to call twice. */
  close(): void;
}

type ValidatorClient = Client<typeof ValidatorService>;

/** Codes that mean the validator did not answer (as opposed to answering "no"). */
const transportCodes = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Canceled,
  Code.Unknown,
]);

/**
 * The engine's way to the validators: a Connect client per validator (HTTP/2, one kept session
 * each) at its endpoint, signing each call with the registry's key for the validator's address.
 * A ConnectError from the validator becomes "refused" (with its message) unless its code says the
 * validator did not answer (unavailable, deadline, cancelled, unknown): then "unreachable".
 */
export function createValidatorCaller(options: ValidatorCallerOptions): ClosableValidatorCaller {
  const timeoutMs = options.timeoutMs ?? 5000;
  const clients = new Map<string, { client: ValidatorClient; session: Http2SessionManager }>();

  const clientFor = (validator: ValidatorInfo) => {
    const baseUrl = endpointUrl(validator.endpoint);
    if (baseUrl === "") return undefined;
    const key = `${validator.address} ${baseUrl}`;
    let entry = clients.get(key);
    if (entry === undefined) {
      const session = new Http2SessionManager(baseUrl);
      const transport = createConnectTransport({
        baseUrl,
        httpVersion: "2",
        sessionManager: session,
        interceptors: [
          createSigningInterceptor({
            keyPair: options.keyPair,
            target: validator.address,
            nonceSource: options.nonceSource,
          }),
        ],
      });
      entry = { client: createClient(ValidatorService, transport), session };
      clients.set(key, entry);
    }
    return entry.client;
  };

  const ask = async (
    validator: ValidatorInfo,
    send: (client: ValidatorClient) => Promise<{ signature?: ValidatorSignature | undefined }>,
  ): Promise<ValidatorReply> => {
    const client = clientFor(validator);
    if (client === undefined)
      return { kind: "unreachable", reason: "the validator has no endpoint" };
    try {
      const response = await send(client);
      return { kind: "signed", signature: create(ValidatorSignatureSchema, response.signature) };
    } catch (error) {
      const connectError = ConnectError.from(error);
      const reason = connectError.rawMessage;
      return transportCodes.has(connectError.code)
        ? { kind: "unreachable", reason }
        : { kind: "refused", reason };
    }
  };

  return {
    signPreprocessing: (validator, request, signal) =>
      ask(validator, (client) => client.signPreprocessing(request, { signal, timeoutMs })),
    signCompletion: (validator, request, signal) =>
      ask(validator, (client) => client.signCompletion(request, { signal, timeoutMs })),
    close() {
      for (const { session } of clients.values()) session.abort();
      clients.clear();
    },
  };
}
