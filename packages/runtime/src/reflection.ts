import {
  create,
  createRegistry,
  type DescFile,
  type DescService,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import {
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflection as ServerReflectionV1,
} from "@tessera/proto/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflectionRequestSchema as ServerReflectionRequestSchemaV1alpha,
  ServerReflectionResponseSchema as ServerReflectionResponseSchemaV1alpha,
  type ServerReflection as ServerReflectionV1alpha,
} from "@tessera/proto/grpc/reflection/v1alpha/reflection_pb.js";

type Answer = NonNullable<
  MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"]
>;

/** Options of {@link createReflection}. */
export interface ReflectionOptions {
  /** The services the server serves: what list_services answers. */
  services: readonly DescService[];
  /** More files whose types may be asked about (the services' own files are always included). */
  files?: readonly DescFile[];
}

/** The two reflection service implementations, v1 and the older v1alpha, over the same answers. */
export interface Reflection {
  v1: ServiceImpl<typeof ServerReflectionV1>;
  v1alpha: ServiceImpl<typeof ServerReflectionV1alpha>;
}

/**
 * Every file in `roots` and, transitively, the files they import, keyed by proto file name
 * ("grpc/health/v1/health.proto"; DescFile.name lacks the ".proto").
 */
function withDependencies(roots: readonly DescFile[]): Map<string, DescFile> {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const dep of file.dependencies) visit(dep);
  };
  for (const root of roots) visit(root);
  return files;
}

/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so that grpcurl and `buf curl` work
 * without proto files. A file answer carries the file and everything it imports, transitively
 * (google/protobuf/timestamp.proto and the like included), each as a serialized
 * google.protobuf.FileDescriptorProto. Unknown names get an error_response with NOT_FOUND;
 * extension queries are answered from the extensions declared in the known files.
 */
export function createReflection(opts: ReflectionOptions): Reflection {
  const files = withDependencies([...opts.services.map((s) => s.file), ...(opts.files ?? [])]);
  const registry = createRegistry(...files.values());
  const serviceNames = [...new Set(opts.services.map((s) => s.typeName))].sort();

  const fileAnswer = (file: DescFile): Answer => ({
    case: "fileDescriptorResponse",
    value: {
      fileDescriptorProto: [...withDependencies([file]).values()].map((f) =>
        toBinary(FileDescriptorProtoSchema, f.proto),
      ),
    },
  });
  const notFound = (what: string): Answer => ({
    case: "errorResponse",
    value: { errorCode: Code.NotFound, errorMessage: `${what} not found` },
  });

  /** The file declaring a symbol: a type, service or extension, or a member of one. */
  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const desc = registry.get(symbol);
    if (desc) return desc.file;
    const dot = symbol.lastIndexOf(".");
    const parent = registry.get(symbol.slice(0, dot));
    const member = symbol.slice(dot + 1);
    if (parent?.kind === "service" && parent.methods.some((m) => m.name === member)) {
      return parent.file;
    }
    if (parent?.kind === "message" && parent.members.some((m) => m.name === member)) {
      return parent.file;
    }
    return undefined;
  };

  const answer = (req: ServerReflectionRequest): Answer => {
    const q = req.messageRequest;
    switch (q.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: { service: serviceNames.map((name) => ({ name })) },
        };
      case "fileByFilename": {
        const file = files.get(q.value);
        return file ? fileAnswer(file) : notFound(`file ${q.value}`);
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(q.value);
        return file ? fileAnswer(file) : notFound(`symbol ${q.value}`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = q.value;
        const extendee = registry.getMessage(containingType);
        const ext = extendee && registry.getExtensionFor(extendee, extensionNumber);
        return ext
          ? fileAnswer(ext.file)
          : notFound(`extension ${extensionNumber} of ${containingType}`);
      }
      case "allExtensionNumbersOfType": {
        if (!registry.getMessage(q.value)) return notFound(`type ${q.value}`);
        const numbers: number[] = [];
        for (const desc of registry) {
          if (desc.kind === "extension" && desc.extendee.typeName === q.value) {
            numbers.push(desc.number);
          }
        }
        return {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: q.value, extensionNumber: numbers.sort((a, b) => a - b) },
        };
      }
      default:
        return {
          case: "errorResponse",
          value: { errorCode: Code.InvalidArgument, errorMessage: "empty reflection request" },
        };
    }
  };

  const respond = (req: ServerReflectionRequest) =>
    create(ServerReflectionResponseSchema, {
      validHost: req.host,
      originalRequest: req,
      messageResponse: answer(req),
    });

  return {
    v1: {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) yield respond(req);
      },
    },
    // v1alpha has the same wire format as v1 (only the package differs), so its messages are
    // carried over as bytes rather than answered by a second copy of the logic.
    v1alpha: {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          const asV1 = fromBinary(
            ServerReflectionRequestSchema,
            toBinary(ServerReflectionRequestSchemaV1alpha, req),
          );
          yield fromBinary(
            ServerReflectionResponseSchemaV1alpha,
            toBinary(ServerReflectionResponseSchema, respond(asV1)),
          );
        }
      },
    },
  };
}
