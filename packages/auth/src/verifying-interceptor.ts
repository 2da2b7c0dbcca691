/**
 * Server side of signed requests: an interceptor that verifies the `tessera-*` headers before the
 * handler runs and leaves the verified caller in the call's context values (see ./caller.ts).
 */
import type { DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  type Interceptor,
  type StreamRequest,
  type UnaryRequest,
} from "@connectrpc/connect";
import { isAddress, publicKeyFromAddress } from "@tessera/identity/address";
import { fromHex, toHex } from "@tessera/identity/hash";
import { verifyAsync } from "@tessera/identity/keys";
import { InvalidNonceError, parseNonce } from "@tessera/identity/nonce";
import {
  InvalidRequestFieldsError,
  requestSigningMessage,
} from "@tessera/identity/request-signing";
import { EMPTY_BODY_HASH, hashMessage, peekFirst } from "./body-hash.js";
import { callDeadlineMs } from "./call-deadline.js";
import { verifiedCallerKey } from "./caller.js";
import { createCallerLanes, type LaneTicket } from "./caller-lanes.js";
import { signedRequestHeaders as H } from "./headers.js";
import { requiresSignatureByDefault } from "./requires-signature.js";

/**
 * Per-caller nonce high-water marks; `createNonceStore(store)` of @tessera/store is one (durable,
 * atomic on SQLite and PostgreSQL).
 */
export interface NonceHighWaterStore {
  /**
   * Records `nonce` for `caller` and returns true only if it is above every earlier one. Calls
   * are decided in the order they were made (not the order they resolve), so a caller's next
   * call may be made before the previous one resolved; @tessera/store's store group-commits them.
   */
  advance(caller: string, nonce: bigint): Promise<boolean>;
}

/** What the server knows of a caller: in good standing, blacklisted, or required but unknown. */
export type CallerStanding = "ok" | "blacklisted" | "unregistered";

/** Options of {@link createVerifyingInterceptor}. */
export interface VerifyingInterceptorOptions {
  /** This server's address: signed requests must name it as their target. */
  readonly selfAddress: string;
  /** Where accepted nonces are recorded; the replay guard, so make it durable. */
  readonly nonceStore: NonceHighWaterStore;
  /** Allowed difference between the caller's and this server's clocks; default 30,000 ms. */
  readonly clockSkewMs?: number | undefined;
  /**
   * Longest call deadline the nonce window grows by; default 300,000 ms. @tessera/runtime already
   * caps deadlines (MAX_DEADLINE_MS); this bounds the window wherever the interceptor runs.
   */
  readonly maxDeadlineMs?: number | undefined;
  /** This server's clock in nanoseconds since the epoch; default `Date.now()` × 10^6. */
  readonly now?: (() => bigint) | undefined;
  /**
   * Decides, from the claimed caller address alone and before any signature work, whether the
   * caller may call `method`; default every caller is "ok". "blacklisted" and "unregistered"
   * reject the call with permission_denied. Runs only for calls that are signed or must be.
   */
  readonly authorizeCaller?:
    | ((caller: string, method: DescMethod) => CallerStanding | Promise<CallerStanding>)
    | undefined;
  /**
   * Whether `method` must be signed; default {@link requiresSignatureByDefault} (every method not
   * marked NO_SIDE_EFFECTS, except gRPC health and reflection).
   */
  readonly requiresSignature?: ((method: DescMethod) => boolean) | undefined;
}

/**
 * Called by a server runtime when a call's HTTP request arrives, before the protocol reads its
 * body: it may note something in the call's context values and returns what to run once the call
 * has ended (on every path: success, error, undecodable body, client gone), or undefined.
 * @tessera/runtime calls the `onArrival` of each of its interceptors that has one (it declares the
 * same shape structurally, as it does not depend on this package).
 */
export type ArrivalHook = (
  header: Headers,
  contextValues: ContextValues,
) => (() => void) | undefined;

/** The interceptor of {@link createVerifyingInterceptor}, with its arrival hook. */
export type VerifyingInterceptor = Interceptor & {
  /**
   * Joins the caller's lane when a call carrying `tessera-caller` and `tessera-signature` arrives,
   * so nonces are recorded in arrival order even where the protocol runs a unary call's
   * interceptors only after reading its body but a stream's at once. Returns the release.
   */
  readonly onArrival: ArrivalHook;
};

const DEFAULT_CLOCK_SKEW_MS = 30_000;
const DEFAULT_MAX_DEADLINE_MS = 300_000;
const NS_PER_MS = 1_000_000n;
const SIGNATURE_HEX = /^[0-9a-fA-F]{128}$/;
const encoder = new TextEncoder();

function reject(code: Code, reason: string): never {
  throw new ConnectError(`signed request rejected: ${reason}`, code);
}

/**
 * A server interceptor that verifies signed requests. A call must be signed when `requiresSignature`
 * says so; a call to an open method that carries `tessera-caller` or `tessera-signature` is
 * verified the same way (a bad signature is never ignored), and one without them passes with no
 * caller. Checks, in order, each failing with its code and a message naming it ("signed request
 * rejected: <check>…"), and none with a side effect:
 *
 * 1. `tessera-caller` present and a valid address — unauthenticated "missing caller" /
 *    "invalid caller address";
 * 2. `authorizeCaller` — permission_denied "caller is blacklisted" / "caller is not registered",
 *    before any signature work;
 * 3. `tessera-signature` present and non-empty — unauthenticated "missing signature";
 * 4. `tessera-target` equals `selfAddress` — "wrong target";
 * 5. `tessera-nonce` a decimal nanosecond time with |now − nonce| ≤ clockSkewMs + the call's
 *    deadline (capped at maxDeadlineMs; no deadline counts as 0) — "invalid nonce" /
 *    "nonce outside window";
 * 6. `tessera-body-hash` equals SHA3-256 of the request message re-encoded (a stream: its first
 *    message, read before the handler starts) — "missing body hash" / "body hash mismatch";
 * 7. the ed25519 signature of the caller over the canonical message — "invalid request fields"
 *    (e.g. a malformed request id) / "bad signature";
 * 8. the nonce above the caller's high-water mark, recorded atomically only now, after every
 *    other check passed — "replayed or stale nonce".
 *
 * Concurrent calls of one caller record their nonces in the order they arrived (./caller-lanes.ts),
 * whatever order their checks finish in; a client stream whose first message is slow holds the
 * caller's later calls at check 8 until it arrives or the call ends. "Arrived" is when the runtime
 * called `onArrival` (when the HTTP request came in: Connect runs a unary call's interceptors only
 * after reading its body, a stream's at once), else when this interceptor started.
 *
 * Then the handler runs with `verifiedCallerKey` set. Messages after a stream's first one are not
 * hashed: they ride on the authenticated stream, whose HTTP/2 stream or HTTP/1 connection the
 * transport keeps. The hash compares the server's own re-encoding, so a client whose schema holds
 * fields unknown to the server may need to send them in field-number order (protobuf-es does).
 *
 * @throws TypeError at creation when `selfAddress` is not an address.
 */
export function createVerifyingInterceptor(
  options: VerifyingInterceptorOptions,
): VerifyingInterceptor {
  const { selfAddress, nonceStore } = options;
  if (!isAddress(selfAddress)) {
    throw new TypeError("selfAddress must be this server's address (tsr1…)");
  }
  const clockSkewMs = options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
  const maxDeadlineMs = options.maxDeadlineMs ?? DEFAULT_MAX_DEADLINE_MS;
  const now = options.now ?? (() => BigInt(Date.now()) * NS_PER_MS);
  const authorizeCaller = options.authorizeCaller;
  const requiresSignature = options.requiresSignature ?? requiresSignatureByDefault;
  const lanes = createCallerLanes();
  /** The lane place taken on arrival; private to this interceptor, so nothing else can set it. */
  const arrivalKey = createContextKey<{ caller: string; ticket: LaneTicket } | undefined>(
    undefined,
    { description: "tessera caller lane joined on arrival" },
  );

  /** Checks 2 to 8 of a call whose caller header (check 1) is valid; returns the request to pass on. */
  async function verifyRest(
    req: UnaryRequest | StreamRequest,
    caller: string,
    callerKey: Uint8Array,
    signatureHeader: string | null,
    ticket: LaneTicket,
  ): Promise<UnaryRequest | StreamRequest> {
    const header = req.header;
    // 2. standing, from the claimed address alone: no signature work for a refused caller
    if (authorizeCaller) {
      const standing = await authorizeCaller(caller, req.method);
      if (standing === "blacklisted") reject(Code.PermissionDenied, "caller is blacklisted");
      if (standing === "unregistered") reject(Code.PermissionDenied, "caller is not registered");
      if (standing !== "ok") throw new Error(`authorizeCaller returned ${String(standing)}`);
    }

    // 3. signature present
    if (!signatureHeader) reject(Code.Unauthenticated, `missing signature (${H.signature})`);

    // 4. target
    const target = header.get(H.target);
    if (target !== selfAddress) {
      reject(Code.Unauthenticated, "wrong target: the request is for another server");
    }

    // 5. nonce window
    let nonce: bigint;
    try {
      nonce = parseNonce(header.get(H.nonce) ?? "");
    } catch (error) {
      if (!(error instanceof InvalidNonceError)) throw error;
      reject(Code.Unauthenticated, `invalid nonce (${H.nonce}): ${error.message}`);
    }
    const deadlineMs = Math.min(callDeadlineMs(header) ?? 0, maxDeadlineMs);
    const windowNs = BigInt(clockSkewMs + deadlineMs) * NS_PER_MS;
    const ageNs = now() - nonce;
    if (ageNs > windowNs || -ageNs > windowNs) {
      reject(
        Code.Unauthenticated,
        `nonce outside window: ${ageNs < 0n ? "ahead of" : "behind"} this server's clock by more than ${clockSkewMs + deadlineMs} ms (clock skew + deadline)`,
      );
    }

    // 6. body hash
    const claimedHash = header.get(H.bodyHash);
    if (!claimedHash) reject(Code.Unauthenticated, `missing body hash (${H.bodyHash})`);
    let bodyHash: Uint8Array;
    let verified: UnaryRequest | StreamRequest = req;
    if (req.stream) {
      const peeked = await peekFirst(req.message);
      bodyHash =
        peeked.first === undefined ? EMPTY_BODY_HASH : hashMessage(req.method.input, peeked.first);
      verified = { ...req, message: peeked.messages };
    } else {
      bodyHash = hashMessage(req.method.input, req.message);
    }
    if (claimedHash.toLowerCase() !== toHex(bodyHash)) {
      reject(Code.Unauthenticated, "body hash mismatch: the request message is not the one signed");
    }

    // 7. signature
    let message: string;
    try {
      message = requestSigningMessage({
        nonce,
        caller,
        target,
        requestId: header.get(H.requestId) ?? "",
        bodyHash,
      });
    } catch (error) {
      if (!(error instanceof InvalidRequestFieldsError)) throw error;
      reject(Code.Unauthenticated, `invalid request fields: ${error.message}`);
    }
    const signatureOk =
      SIGNATURE_HEX.test(signatureHeader) &&
      (await verifyAsync(callerKey, encoder.encode(message), fromHex(signatureHeader)));
    if (!signatureOk) reject(Code.Unauthenticated, "bad signature");

    // 8. replay: the only write, after everything else passed, in the caller's arrival order
    await ticket.turn();
    // The order is fixed when advance is called, so the caller's next call may go ahead now and
    // join the same group commit instead of waiting for this one's fsync.
    const accepted = nonceStore.advance(caller, nonce);
    ticket.done();
    if (!(await accepted)) reject(Code.Unauthenticated, "replayed or stale nonce");
    return verified;
  }

  const interceptor: Interceptor = (next) => async (req) => {
    // Nothing from before this interceptor may pose as a verified caller.
    req.contextValues.delete(verifiedCallerKey);
    const arrival = req.contextValues.get(arrivalKey);
    req.contextValues.delete(arrivalKey);
    let ticket: LaneTicket | undefined;
    let caller: string;
    let verified: UnaryRequest | StreamRequest;
    try {
      const header = req.header;
      const callerHeader = header.get(H.caller);
      const signatureHeader = header.get(H.signature);
      if (!requiresSignature(req.method) && callerHeader === null && signatureHeader === null) {
        arrival?.ticket.done();
        return await next(req);
      }

      // 1. caller
      if (!callerHeader) reject(Code.Unauthenticated, `missing caller (${H.caller})`);
      caller = callerHeader;
      let callerKey: Uint8Array;
      try {
        // The checksum is checked here; identity caches the key's OpenSSL form per public key.
        callerKey = publicKeyFromAddress(caller);
      } catch {
        reject(Code.Unauthenticated, "invalid caller address");
      }

      // The place taken when the request arrived, or (outside the runtime, or if the caller header
      // changed since) one joined now, synchronously, before anything awaits: see ./caller-lanes.ts.
      if (arrival !== undefined && arrival.caller === caller) {
        ticket = arrival.ticket;
      } else {
        arrival?.ticket.done();
        ticket = lanes.join(caller);
      }
      verified = await verifyRest(req, caller, callerKey, signatureHeader, ticket);
    } finally {
      (ticket ?? arrival?.ticket)?.done();
    }
    req.contextValues.set(verifiedCallerKey, caller);
    return next(verified);
  };

  const onArrival: ArrivalHook = (header, contextValues) => {
    const caller = header.get(H.caller);
    if (!caller || !header.get(H.signature)) return undefined;
    const ticket = lanes.join(caller);
    contextValues.set(arrivalKey, { caller, ticket });
    return ticket.done;
  };

  return Object.assign(interceptor, { onArrival });
}
