import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Compression,
  encodeEnvelope,
  envelopeDecompress,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  codeFromHttpStatus as connectCodeFromHttpStatus,
  createEndStreamSerialization,
  endStreamFlag,
  errorFromJsonBytes,
  errorToJsonBytes,
  headerStreamEncoding,
  headerUnaryContentLength,
} from "@connectrpc/connect/protocol-connect";
import {
  findTrailerError,
  codeFromHttpStatus as grpcCodeFromHttpStatus,
  headerEncoding as grpcHeaderEncoding,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { StatusFraming } from "./rpc-protocol.js";

/** Options of {@link observeOutcome}. */
export interface OutcomeOptions {
  /** Returns a replacement for the error about to be sent, or undefined to send it as it is. */
  correct(error: ConnectError): ConnectError | undefined;
  /**
   * Called once, after the last byte was handed to the connection (undefined: OK) or when the
   * response was abandoned (the client left: canceled).
   */
  onDone(error: ConnectError | undefined): void;
}

const compressions: Record<string, Compression> = {
  gzip: compressionGzip,
  br: compressionBrotli,
};
const maxStatusBytes = 1024 * 1024;
const endStream = createEndStreamSerialization(undefined);

/**
 * Reads, and can replace, the status a Connect handler's response carries to the client, in
 * each protocol's own framing (see {@link StatusFraming}).
 *
 * Why this layer exists: interceptors do not see every outcome. Connect decodes a unary request,
 * and checks its size, before any interceptor runs, and encodes (and size-checks) the response
 * after they return; a status that only interceptors observed would be wrong for exactly the
 * calls that matter (oversize, undecodable). The final bytes are the truth.
 */
export async function observeOutcome(
  framing: StatusFraming,
  res: UniversalServerResponse,
  opts: OutcomeOptions,
): Promise<UniversalServerResponse> {
  let outcome: ConnectError | undefined;
  let seen = false;
  const settle = (error: ConnectError | undefined) => {
    const corrected = error && opts.correct(error);
    outcome = corrected ?? error;
    seen = true;
    return corrected;
  };
  const httpError = (codeFromHttpStatus: (status: number) => Code) =>
    new ConnectError(`HTTP status ${res.status}`, codeFromHttpStatus(res.status));

  let mapChunk = async (chunk: Uint8Array) => chunk;
  let onComplete = () => {};
  switch (framing) {
    case "connect-unary": {
      // The whole body is one small in-memory chunk; read it first, as the status may change.
      if (res.status === 200) {
        settle(undefined);
        break;
      }
      const bytes = await readAll(res.body);
      const fallback = httpError(connectCodeFromHttpStatus);
      let error: ConnectError;
      try {
        error = errorFromJsonBytes(bytes, undefined, fallback);
      } catch {
        error = fallback;
      }
      const corrected = settle(error);
      if (!corrected) return { ...res, body: tap([bytes]) };
      const body = errorToJsonBytes(corrected, undefined);
      const header = new Headers(res.header);
      header.set(headerUnaryContentLength, String(body.byteLength));
      return { ...res, status: codeToHttpStatus(corrected.code), header, body: tap([body]) };
    }
    case "grpc-trailers":
      onComplete = () => {
        if (res.status !== 200) return settle(httpError(grpcCodeFromHttpStatus));
        const trailer = res.trailer ?? new Headers();
        const corrected = settle(findTrailerError(trailer));
        if (corrected) setTrailerStatus(trailer, corrected);
      };
      break;
    case "grpc-web-trailers":
    case "connect-stream": {
      const web = framing === "grpc-web-trailers";
      const flag = web ? trailerFlag : endStreamFlag;
      const encoding = res.header?.get(web ? grpcHeaderEncoding : headerStreamEncoding);
      const compression = (encoding && compressions[encoding]) || null;
      // Connect frames one envelope per chunk; the end envelope is the one with the flag set.
      mapChunk = async (chunk) => {
        const flags = chunk[0] ?? 0;
        if (chunk.byteLength < 5 || (flags & flag) !== flag) return chunk;
        const corrected = await readEndEnvelope(flags, chunk.subarray(5));
        return corrected ?? chunk;
      };
      const readEndEnvelope = async (flags: number, data: Uint8Array) => {
        let envelope: { data: Uint8Array };
        try {
          envelope = await envelopeDecompress({ flags, data }, compression, maxStatusBytes);
        } catch {
          return undefined; // unreadable: leave it to the client, report no status
        }
        if (web) {
          const trailer = trailerParse(envelope.data);
          const corrected = settle(findTrailerError(trailer));
          if (!corrected) return undefined;
          setTrailerStatus(trailer, corrected);
          return encodeEnvelope(flag, trailerSerialize(trailer));
        }
        const end = endStream.parse(envelope.data);
        const corrected = settle(end.error);
        if (!corrected) return undefined;
        return encodeEnvelope(flag, endStream.serialize({ ...end, error: corrected }));
      };
      onComplete = () => {
        if (seen || res.status === 200) return;
        settle(httpError(web ? grpcCodeFromHttpStatus : connectCodeFromHttpStatus));
      };
      break;
    }
  }

  async function* tap(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | undefined) {
    let failure: ConnectError | undefined;
    try {
      for await (const chunk of body ?? []) yield await mapChunk(chunk);
      onComplete();
    } catch (err) {
      failure = ConnectError.from(err);
      throw err;
    } finally {
      if (failure) opts.onDone(failure);
      else if (seen) opts.onDone(outcome);
      else opts.onDone(new ConnectError("response abandoned before its status", Code.Canceled));
    }
  }
  return { ...res, body: tap(res.body) };
}

async function readAll(body: AsyncIterable<Uint8Array> | undefined): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body ?? []) chunks.push(chunk);
  return Buffer.concat(chunks);
}
