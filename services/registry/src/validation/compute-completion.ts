/**
 * ComputeCompletion (tessera/common/v1/common.proto): a compute node's signed attestation of a
 * result. The node signs, with ed25519, the message's binary encoding with `signature` empty; the
 * key is the one `compute_node_address` encodes, so anyone verifies it with no lookup.
 *
 * Pure: imports only protobuf and @tessera/identity, so the wallet, gateway and compute node can
 * use it as is.
 */
import { toBinary } from "@bufbuild/protobuf";
import { isAddress, publicKeyFromAddress } from "@tessera/identity/address";
import { type KeyPair, verify } from "@tessera/identity/keys";
import {
  type ComputeCompletion,
  ComputeCompletionSchema,
} from "@tessera/proto/tessera/common/v1/common_pb.js";

const EMPTY = new Uint8Array(0);

/** The bytes a node signs: the completion's binary encoding with `signature` empty. */
export function computeCompletionSigningBytes(completion: ComputeCompletion): Uint8Array {
  return toBinary(ComputeCompletionSchema, { ...completion, signature: EMPTY });
}

/**
 * A copy of `completion` signed by `keyPair`.
 * @throws TypeError when `compute_node_address` is not the key pair's address.
 */
export function signComputeCompletion(
  completion: ComputeCompletion,
  keyPair: KeyPair,
): ComputeCompletion {
  if (completion.computeNodeAddress !== keyPair.address) {
    throw new TypeError(`the completion's compute_node_address is not ${keyPair.address}`);
  }
  return { ...completion, signature: keyPair.sign(computeCompletionSigningBytes(completion)) };
}

/**
 * Whether `signature` is the signature of the key `compute_node_address` encodes over the
 * completion. False, never a throw, for a malformed address or a missing signature.
 */
export function verifyComputeCompletion(completion: ComputeCompletion): boolean {
  if (completion.signature.length === 0 || !isAddress(completion.computeNodeAddress)) return false;
  return verify(
    publicKeyFromAddress(completion.computeNodeAddress),
    computeCompletionSigningBytes(completion),
    completion.signature,
  );
}
