/**
 * The body hash of a signed request: SHA3-256 over the request message's protobuf binary
 * encoding (the same digest as @tessera/identity's hashRequestMessage, computed by OpenSSL for
 * speed). A stream is covered by its first message; a stream without messages by the hash of
 * zero bytes, which is also the hash of an empty message.
 */
import { createHash } from "node:crypto";
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";

/** SHA3-256 over `message`'s binary encoding; 32 bytes. */
export function hashMessage<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): Uint8Array {
  return sha3(toBinary(schema, message));
}

/** The body hash of a stream that carries no message: SHA3-256 of zero bytes. */
export const EMPTY_BODY_HASH: Uint8Array = sha3(new Uint8Array(0));

function sha3(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha3-256").update(bytes).digest());
}

/** A stream's first message, read ahead, and the whole stream to pass on. */
export interface PeekedStream<T> {
  /** The first message, or undefined when the stream ended without one. */
  readonly first: T | undefined;
  /** Every message of the stream, the first one included, in order; iterate it once. */
  readonly messages: AsyncIterable<T>;
}

/**
 * Reads the first message of `stream` and returns it with an iterable that yields it again,
 * followed by the rest of the stream. Stopping the returned iterable early stops `stream`.
 */
export async function peekFirst<T>(stream: AsyncIterable<T>): Promise<PeekedStream<T>> {
  const iterator = stream[Symbol.asyncIterator]();
  const head = await iterator.next();
  async function* messages(): AsyncGenerator<T> {
    if (head.done) return;
    yield head.value;
    yield* { [Symbol.asyncIterator]: () => iterator };
  }
  return { first: head.done ? undefined : head.value, messages: messages() };
}
