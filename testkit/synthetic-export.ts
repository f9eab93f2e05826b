// A synthetic QuantGraph written as an export directory (model.onnx + manifest.json), as the
// worker's export writes one but without training or verification (accuracies zero), so serving
// tests and the predict bench load it like a real model. The export's own functions describe and
// write it (describeModelFile, writeModelFiles), so its manifest has the real format and passes the
// check every reader applies (src/export/manifest.ts).
import { fileMetadata } from '../src/export/file-contract.js';
import { expectedKernels, fusionReport, optimizedOpCounts } from '../src/export/fusion-check.js';
import { ModelManifest, type FusionReport, type WeightEncoding } from '../src/export/manifest.js';
import { quantGraphToFloatOnnx } from '../src/export/onnx-float.js';
import { quantGraphToQdqOnnx } from '../src/export/onnx-qdq.js';
import type { QuantGraph } from '../src/ml/quant-graph.js';
import type { ModelEvaluation } from '../src/export/evaluation.js';
import { describeModelFile, writeModelFiles } from '../src/export/export-job-write.js';

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
    ...describeModelFile({
      jobId: opts.jobId,
      graph,
      bytes,
      encoding: opts.weightEncoding,
      fusion,
      float32SizeBytes: quantGraphToFloatOnnx(graph).length,
      createdAt: opts.createdAt,
    }),
    accuracy: { images: 0, floatTop1: 0, int8Top1: 0, agreement: 1, maxLogitDiffSteps: 0 },
    evaluation: opts.evaluation,
    checkpoint: { step: 0 },
  } satisfies ModelManifest);
  const { onnxPath, manifestPath } = await writeModelFiles(dir, bytes, manifest);
  return { manifest, onnxFile: onnxPath, manifestFile: manifestPath };
}
