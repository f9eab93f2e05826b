// What a model.onnx says about itself: its classes, input, output, preprocessing and weight
// storage, as JSON in the file's metadata (key "qatserve"), the same fields as its manifest's. A
// file downloaded alone (GET /v1/models/:id/download) can then be run without the manifest:
// `qatserve eval --model model.onnx`, or ONNX Runtime elsewhere (in Python,
// `json.loads(session.get_modelmeta().custom_metadata_map["qatserve"])`); Netron shows it too.
import { FLATTEN_BACKGROUND } from '../data/image-decode.js';
import type { QuantGraph } from '../ml/quant-graph.js';
import { FileContract, issuesText, type WeightEncoding } from './manifest.js';
import { decodeModel } from './onnx-proto.js';

/** The metadata key (ModelProto.metadata_props) holding the contract. */
export const CONTRACT_KEY = 'qatserve';

/** The contract of `graph` written with `weightEncoding`: the one source of the manifest's same fields. */
export function fileContract(graph: QuantGraph, weightEncoding: WeightEncoding): FileContract {
  return {
    classes: [...graph.classes],
    input: { name: graph.input.name, layout: 'NCHW', dtype: 'float32', size: graph.inputSize },
    output: { name: graph.output, dtype: 'float32', meaning: 'logits' },
    preprocess: {
      resize: 'short-side-then-center-crop',
      colorSpace: 'srgb',
      alphaBackground: { ...FLATTEN_BACKGROUND },
      normalization: { mean: [...graph.normalization.mean], std: [...graph.normalization.std] },
    },
    quantization: { weightEncoding, weightBits: graph.weightBits ?? 8 },
  };
}

/** The ONNX metadata of an exported file: the job that made it and the contract. */
export function fileMetadata(graph: QuantGraph, weightEncoding: WeightEncoding, jobId: string): Record<string, string> {
  return { jobId, [CONTRACT_KEY]: JSON.stringify(fileContract(graph, weightEncoding)) };
}

/**
 * The contract in an ONNX file's metadata, checked against its schema (a file of any origin);
 * `contract` null with the reason when the file has none (exported before the forty-first
 * session, or not by qatserve) or a malformed one.
 */
export function readFileContract(bytes: Uint8Array): { contract: FileContract; problem: null } | { contract: null; problem: string } {
  let entry: { key: string; value: string } | undefined;
  try {
    entry = decodeModel(bytes).metadataProps?.find((p) => p.key === CONTRACT_KEY);
  } catch (err) {
    return { contract: null, problem: `it is not an ONNX model (${(err as Error).message})` };
  }
  if (!entry) return { contract: null, problem: `its metadata has no "${CONTRACT_KEY}" entry (exported before models carried one, or not by qatserve)` };
  let raw: unknown;
  try {
    raw = JSON.parse(entry.value);
  } catch {
    return { contract: null, problem: `its "${CONTRACT_KEY}" metadata is not JSON` };
  }
  const parsed = FileContract.safeParse(raw);
  if (parsed.success) return { contract: parsed.data, problem: null };
  return { contract: null, problem: `its "${CONTRACT_KEY}" metadata is not a model contract (${issuesText(parsed.error)})` };
}
