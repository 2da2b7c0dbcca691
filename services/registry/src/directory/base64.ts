/** Bytes in text columns: protobuf encodings are stored as base64, the same on both stores. */

/** Bytes of a base64 column, as a plain Uint8Array (not a Buffer). */
export function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text, "base64"));
}

/** Base64 of `bytes` for a text column. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}
