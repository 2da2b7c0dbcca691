/**
 * ListModels: one page of the served models, ordered by model id, filtered by category, subnet
 * and availability. The page token names the last model id of the previous page and a digest of
 * the filters, so a token is refused for other filters.
 */
import { create } from "@bufbuild/protobuf";
import { sha256, toHex } from "@tessera/identity/hash";
import {
  type SupportedModel,
  SupportedModelSchema,
} from "@tessera/proto/tessera/gateway/v1/inference_pb.js";
import { invalidArgument } from "../errors.js";
import type { GatewayNode } from "../nodes/node-book.js";
import type { ModelDirectory } from "./model-directory.js";

/** The filters and paging of a ListModels request. */
export interface ListModelsQuery {
  readonly category: string;
  readonly subnetId: bigint | undefined;
  readonly availableOnly: boolean;
  readonly pageSize: number;
  readonly pageToken: string;
}

/** What the page is built from. */
export interface ListModelsContext {
  readonly directory: ModelDirectory;
  readonly nodes: readonly GatewayNode[];
  readonly isOnline: (node: GatewayNode) => boolean;
  readonly subnetId: bigint;
  readonly paymentRequired: boolean;
}

const MAX_PAGE = 500;
const DEFAULT_PAGE = 100;

function filterKey(query: ListModelsQuery): string {
  const text = JSON.stringify([query.category, String(query.subnetId), query.availableOnly]);
  return toHex(sha256(new TextEncoder().encode(text))).slice(0, 16);
}

function readToken(query: ListModelsQuery): string {
  if (query.pageToken === "") return "";
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(query.pageToken, "base64url").toString("utf8"));
  } catch {
    throw invalidArgument("page_token", "is not a token this gateway issued");
  }
  const token = parsed as { f?: unknown; a?: unknown };
  if (typeof token.a !== "string" || token.f !== filterKey(query)) {
    throw invalidArgument("page_token", "was not issued for these filters");
  }
  return token.a;
}

/** One page of models. @throws GatewayError invalid_argument for a foreign page token. */
export function listModels(
  query: ListModelsQuery,
  context: ListModelsContext,
): { models: SupportedModel[]; nextPageToken: string } {
  const after = readToken(query);
  const pageSize = Math.min(MAX_PAGE, query.pageSize === 0 ? DEFAULT_PAGE : query.pageSize);
  if (query.subnetId !== undefined && query.subnetId !== context.subnetId) {
    return { models: [], nextPageToken: "" };
  }
  const models: SupportedModel[] = [];
  let more = false;
  for (const modelId of context.directory.modelIds(context.nodes)) {
    if (modelId <= after && after !== "") continue;
    const descriptor = context.directory.describe(modelId, context.nodes);
    if (descriptor === undefined) continue;
    if (query.category !== "" && descriptor.category !== query.category) continue;
    const online = context.nodes.filter(
      (node) => node.accepted.has(modelId) && context.isOnline(node),
    ).length;
    if (query.availableOnly && online === 0) continue;
    if (models.length === pageSize) {
      more = true;
      break;
    }
    models.push(
      create(SupportedModelSchema, {
        descriptor,
        subnetId: context.subnetId,
        onlineNodeCount: online,
        paymentRequired: context.paymentRequired,
        indicativePrice: "",
      }),
    );
  }
  const last = models.at(-1)?.descriptor?.modelId;
  const nextPageToken =
    more && last !== undefined
      ? Buffer.from(JSON.stringify({ f: filterKey(query), a: last })).toString("base64url")
      : "";
  return { models, nextPageToken };
}
