// Export step 4: the manifest of the verified model, and both files written atomically (a reader
// never sees a model.onnx without its manifest).
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TrainedModel } from '../ml/index.js';
import type { QuantGraph } from '../ml/quant-graph.js';
import { fileContract } from './file-contract.js';
import { expectedKernels } from './fusion-check.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, MODEL_FILE, ModelManifest, type FusionReport, type WeightEncoding } from './manifest.js';
import type { ModelEvaluation } from './evaluation.js';
import { ONNX_OPSET } from './onnx-qdq.js';
import type { Verified } from './export-job-verify.js';

/**
 * What a manifest says of its model file: the file's identity, what the graph was built for, and
 * how it is quantized. The export's manifest adds the measured accuracy to it; testkit's synthetic
 * exports (serving tests, the predict bench) write it alone, so both have one format.
 */
export function describeModelFile(args: {
  jobId: string;
  graph: QuantGraph;
  bytes: Uint8Array;
  encoding: WeightEncoding;
  fusion: FusionReport;
  float32SizeBytes: number;
  createdAt?: Date;
}): Omit<ModelManifest, 'accuracy' | 'evaluation' | 'warnings' | 'checkpoint'> {
  const { graph, bytes } = args;
  const kernels = expectedKernels(graph);
  // The fields the file carries in its own metadata, from the same function (file-contract.ts).
  const { quantization: stored, ...described } = fileContract(graph, args.encoding);
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    jobId: args.jobId,
    createdAt: (args.createdAt ?? new Date()).toISOString(),
    file: MODEL_FILE,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    sizeBytes: bytes.length,
    float32SizeBytes: args.float32SizeBytes,
    ...described,
    quantization: {
      format: 'onnx-qdq',
      opset: ONNX_OPSET,
      activationType: 'uint8 asymmetric per-tensor',
      weightType: 'int8 symmetric per-channel',
      ...stored,
      input: graph.input.quant,
      logits: graph.nodes.find((nd) => nd.output === graph.output)!.outQuant,
      convs: kernels.convs,
      adds: kernels.adds,
      activations: [
        { tensor: graph.input.name, ...graph.input.quant },
        ...graph.nodes.map((nd) => ({ tensor: nd.output, scale: nd.outQuant.scale, zeroPoint: nd.outQuant.zeroPoint })),
      ],
      fusion: args.fusion,
    },
  };
}

/** The manifest of the chosen candidate: its file, preprocessing, quantization and measured accuracy. */
export function buildManifest(args: {
  jobId: string;
  model: TrainedModel;
  graph: QuantGraph;
  verified: Verified;
  accuracy: { floatTop1: number; int8Top1: number };
  evaluation: ModelEvaluation;
  warnings: Array<{ code: string; message: string }>;
  fusion: FusionReport;
  float32SizeBytes: number;
}): ModelManifest {
  const { verified } = args;
  const { bytes, encoding } = verified.chosen;
  return {
    ...describeModelFile({ jobId: args.jobId, graph: args.graph, bytes, encoding, fusion: args.fusion, float32SizeBytes: args.float32SizeBytes }),
    accuracy: {
      images: verified.comparison.images,
      floatTop1: args.accuracy.floatTop1,
      int8Top1: args.accuracy.int8Top1,
      agreement: verified.comparison.agreement,
      maxLogitDiffSteps: verified.comparison.maxLogitDiffSteps,
      maxStepsVsIntegerReference: verified.maxStepsVsIntegerReference,
    },
    evaluation: args.evaluation,
    warnings: args.warnings,
    checkpoint: { step: args.model.step },
  };
}

async function writeAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

/** Writes model.onnx, then manifest.json (removing the model again if the manifest fails). */
export async function writeModelFiles(outDir: string, bytes: Uint8Array, manifest: ModelManifest): Promise<{ onnxPath: string; manifestPath: string }> {
  // Checked as every reader checks it, so an export never ships a manifest the server would refuse.
  ModelManifest.parse(manifest);
  await mkdir(outDir, { recursive: true });
  const onnxPath = path.join(outDir, MODEL_FILE);
  const manifestPath = path.join(outDir, MANIFEST_FILE);
  await writeAtomic(onnxPath, bytes);
  try {
    await writeAtomic(manifestPath, JSON.stringify(manifest, null, 2));
  } catch (err) {
    await rm(onnxPath, { force: true });
    throw err;
  }
  return { onnxPath, manifestPath };
}
