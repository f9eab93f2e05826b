// A synthetic QuantGraph written as an export directory (model.onnx + manifest.json), as the
// worker's export writes one but without training or verification (accuracies zero), so serving
// tests and the predict bench load it like a real model. The export's own writer writes it, so its
// manifest passes the check every reader applies (src/export/manifest.ts) and has the real format.
import { createHash } from 'node:crypto';
import { fileContract, fileMetadata } from '../src/export/file-contract.js';
import { expectedKernels, fusionReport, optimizedOpCounts } from '../src/export/fusion-check.js';
import { MANIFEST_FORMAT, MANIFEST_VERSION, MODEL_FILE, ModelManifest, type FusionReport, type WeightEncoding } from '../src/export/manifest.js';
import { quantGraphToFloatOnnx } from '../src/export/onnx-float.js';
import { ONNX_OPSET, quantGraphToQdqOnnx } from '../src/export/onnx-qdq.js';
import type { QuantGraph } from '../src/ml/quant-graph.js';
import type { ModelEvaluation } from '../src/export/evaluation.js';
import { writeModelFiles } from '../src/export/export-job-write.js';

export interface SyntheticExport {
  manifest: ModelManifest;
  onnxFile: string;
  manifestFile: string;
}

export async function writeSyntheticExport(
  dir: string,
  graph: QuantGraph,
  opts: {
    jobId: string;
    weightEncoding: WeightEncoding;
    createdAt?: Date;
    /** Ask ORT what it makes of the file (seconds at 224 px); default: recorded as fully fused, unmeasured. */
    measureFusion?: boolean;
    /** The manifest's final evaluation; default none. */
    evaluation?: ModelEvaluation;
  },
): Promise<SyntheticExport> {
  const bytes = quantGraphToQdqOnnx(graph, { weightEncoding: opts.weightEncoding, metadata: fileMetadata(graph, opts.weightEncoding, opts.jobId) });
  const { quantization: stored, ...described } = fileContract(graph, opts.weightEncoding);
  const k = expectedKernels(graph);
  const fusion: FusionReport = opts.measureFusion
    ? fusionReport(await optimizedOpCounts(bytes), k)
    : {
        convs: k.convs,
        qlinearConvs: k.convs,
        floatConvs: 0,
        qlinearAdds: k.adds,
        adds: k.adds,
        qlinearGlobalAvgPools: k.pools,
        qgemms: k.denses,
        fullyFused: true,
      };
  const manifest = ModelManifest.parse({
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    jobId: opts.jobId,
    createdAt: (opts.createdAt ?? new Date()).toISOString(),
    file: MODEL_FILE,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    sizeBytes: bytes.length,
    float32SizeBytes: quantGraphToFloatOnnx(graph).length,
    ...described,
    quantization: {
      format: 'onnx-qdq',
      opset: ONNX_OPSET,
      activationType: 'uint8 asymmetric per-tensor',
      weightType: 'int8 symmetric per-channel',
      ...stored,
      input: graph.input.quant,
      logits: graph.nodes.at(-1)!.outQuant,
      convs: k.convs,
      adds: k.adds,
      activations: [],
      fusion,
    },
    accuracy: { images: 0, floatTop1: 0, int8Top1: 0, agreement: 1, maxLogitDiffSteps: 0 },
    evaluation: opts.evaluation,
    checkpoint: { step: 0 },
  } satisfies ModelManifest);
  const { onnxPath, manifestPath } = await writeModelFiles(dir, bytes, manifest);
  return { manifest, onnxFile: onnxPath, manifestFile: manifestPath };
}
