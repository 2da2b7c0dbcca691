/**
 * ValidatorService handlers (the `validator` role): one validator's checks and signature. Also the
 * Connect adapter through which a validator reads the registry (nodes, subnets, the validator set)
 * with the registry's open read RPCs.
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
import { type CallerStanding, requireCaller } from "@tessera/auth";
import {
  RegistryService,
  type ValidatorInfo,
  ValidatorStatus,
} from "@tessera/proto/tessera/registry/v1/registry_service_pb.js";
import {
  SignCompletionResponseSchema,
  SignPreprocessingResponseSchema,
  type ValidatorService,
} from "@tessera/proto/tessera/registry/v1/validator_service_pb.js";
import { ValidationError } from "./validation/errors.js";
import { PROTOCOL_VERSION } from "./validation/protocol-version.js";
import type { ValidationSources, ValidatorSet } from "./validation/sources.js";
import type { ValidatorSigner } from "./validation/validator-signer.js";
import { toConnectError } from "./validation-service.js";

/** What {@link createValidatorService} needs. */
export interface ValidatorServiceDeps {
  /** This validator's signing engine (createValidatorSigner). */
  readonly signer: ValidatorSigner;
  /** Addresses of the registries this validator answers (TRUSTED_REGISTRIES). */
  readonly trustedRegistries: Iterable<string>;
}

/**
 * ValidatorService: every call must be signed by a trusted registry (PERMISSION_DENIED
 * otherwise); the signer's check failures come back as their codes with the failed check named.
 */
export function createValidatorService(
  deps: ValidatorServiceDeps,
): ServiceImpl<typeof ValidatorService> {
  const { signer } = deps;
  const trusted = new Set(deps.trustedRegistries);
  const checkCaller = (caller: string) => {
    if (!trusted.has(caller)) {
      throw new ConnectError(
        `${caller} is not a registry this validator answers`,
        Code.PermissionDenied,
      );
    }
  };
  return {
    async signPreprocessing(request, ctx) {
      checkCaller(requireCaller(ctx));
      try {
        const signature = await signer.signPreprocessing(request);
        return create(SignPreprocessingResponseSchema, { signature });
      } catch (error) {
        throw toConnectError(error);
      }
    },
    async signCompletion(request, ctx) {
      checkCaller(requireCaller(ctx));
      try {
        const signature = await signer.signCompletion(request, ctx.signal);
        return create(SignCompletionResponseSchema, { signature });
      } catch (error) {
        throw toConnectError(error);
      }
    },
  };
}

/**
 * The verifying interceptor's `authorizeCaller` for the validator role: only `trustedRegistries`
 * are "ok", anyone else is "unregistered" (permission_denied before any signature work).
 */
export function authorizeTrustedRegistries(
  trustedRegistries: Iterable<string>,
): (caller: string) => CallerStanding {
  const trusted = new Set(trustedRegistries);
  return (caller) => (trusted.has(caller) ? "ok" : "unregistered");
}

/** Options of {@link createRegistryReadSources}. */
export interface RegistryReadSourcesOptions {
  /** Base URL of the registry (REGISTRY_URL). */
  readonly registryUrl: string;
  /** How long the validator set is cached, in milliseconds; default 5000. */
  readonly validatorSetCacheMs?: number | undefined;
  /** Deadline of each read, in milliseconds; default 5000. */
  readonly timeoutMs?: number | undefined;
  /** Wall clock for the cache; default `Date.now`. */
  readonly nowMs?: (() => number) | undefined;
}

/** {@link ValidationSources} with a connection to close. */
export interface ClosableValidationSources extends ValidationSources {
  /** Closes the connection to the registry. Safe to call twice. */
  close(): void;
}

/**
 * A validator's reads of the registry over its open RPCs (GetNode, GetSubnet, ListValidators):
 * NOT_FOUND becomes undefined; any other failure is ValidationError("unavailable"), so the
 * validator refuses to sign rather than guess. The validator set (ACTIVE validators and the
 * registry's `required_signatures`) is cached for `validatorSetCacheMs`. The validator does not
 * take the node's record on trust: the checks verify its signature and proof of work themselves.
 */
export function createRegistryReadSources(
  options: RegistryReadSourcesOptions,
): ClosableValidationSources {
  const session = new Http2SessionManager(options.registryUrl);
  const client: Client<typeof RegistryService> = createClient(
    RegistryService,
    createConnectTransport({
      baseUrl: options.registryUrl,
      httpVersion: "2",
      sessionManager: session,
    }),
  );
  const timeoutMs = options.timeoutMs ?? 5000;
  const cacheMs = options.validatorSetCacheMs ?? 5000;
  const nowMs = options.nowMs ?? Date.now;
  let cached: { set: ValidatorSet; atMs: number } | undefined;

  const read = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (error) {
      const connectError = ConnectError.from(error);
      if (connectError.code === Code.NotFound) return undefined;
      throw new ValidationError(
        "unavailable",
        `cannot read ${what} from the registry: ${connectError.rawMessage}`,
        { cause: error },
      );
    }
  };

  return {
    async getNode(address) {
      const response = await read(`node ${address}`, () =>
        client.getNode({ protocolVersion: PROTOCOL_VERSION, nodeAddress: address }, { timeoutMs }),
      );
      return response?.node;
    },
    async getSubnet(subnetId) {
      const response = await read(`subnet ${subnetId}`, () =>
        client.getSubnet({ protocolVersion: PROTOCOL_VERSION, subnetId }, { timeoutMs }),
      );
      return response?.subnet;
    },
    async getValidatorSet() {
      if (cached !== undefined && nowMs() - cached.atMs < cacheMs) return cached.set;
      const validators: ValidatorInfo[] = [];
      let pageToken = "";
      let quorum = 0;
      do {
        const page = await read("the validator set", () =>
          client.listValidators(
            {
              protocolVersion: PROTOCOL_VERSION,
              status: ValidatorStatus.ACTIVE,
              pageSize: 500,
              pageToken,
            },
            { timeoutMs },
          ),
        );
        if (page === undefined) throw new ValidationError("unavailable", "no validator set");
        validators.push(...page.validators);
        quorum = page.requiredSignatures;
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      if (quorum < 1) {
        throw new ValidationError("unavailable", "the registry reports no required_signatures");
      }
      const set = { validators, quorum };
      cached = { set, atMs: nowMs() };
      return set;
    },
    close() {
      session.abort();
    },
  };
}
