/**
 * The onnxruntime-node this package runs models with, for code that must run a model exactly as
 * the nodes do but outside the model host: tests and benchmarks that compare the network's
 * outputs with onnxruntime's own. Importing it from here keeps one copy and one version.
 */
import * as ort from "onnxruntime-node";

export { ort };
