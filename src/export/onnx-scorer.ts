// The model as the export writes it, on ONNX Runtime, for scoring a training run's evaluations
// (TrainOptions.int8Scorer and floatScorer), on the training step's threads (idle meanwhile).
//  - int8: the QDQ file the export writes: int8-stored weights, or uint8-stored 8-bit weights on a
//    CPU where int8 ones may saturate (ort-int8-cpu.ts; the storage the export falls back to when
//    the int8 file does not verify). Its integer kernels take 0.18 ms per image at 0.35@32 and
//    2.2-2.6 ms at 1.0@224 on one thread, where the int8 graph in tfjs takes 1.4 and 18-19. The
//    top-1 it reports is the served file's.
//  - float: the float network, BN folded (to-float-graph.ts). At 1.0@224 (batch 8) 7.6 ms per image
//    on one thread and 5.4 on two, where the tfjs forward pass takes 18.3 on one; at 0.35@32
//    (batch 64) 0.78 on one thread against 1.44.
import { createHash } from 'node:crypto';
import type { FloatGraph } from '../ml/float-graph.js';
import type { QuantGraph } from '../ml/quant-graph.js';
import type { Scorer } from '../ml/train-api.js';
import type { WeightEncoding } from './manifest.js';
import { floatGraphToOnnx } from './onnx-float.js';
import { exactWeightEncoding } from './ort-int8-cpu.js';
import { quantGraphToQdqOnnx } from './onnx-qdq.js';
import { nhwcToNchw, OnnxRunner } from './verify.js';

async function onnxScorer(model: Uint8Array, inputSize: number, threads: number, fingerprint?: string): Promise<Scorer> {
  const runner = await OnnxRunner.create(model, threads);
  return {
    logits: (x, n) => runner.run(nhwcToNchw(x, n, inputSize), n, inputSize),
    release: () => runner.release(),
    fingerprint,
  };
}

/** How the int8 scorer's file stores `graph`'s weights on this CPU. */
export function scorerWeightEncoding(graph: QuantGraph): WeightEncoding {
  return exactWeightEncoding(graph.weightBits ?? 8);
}

/** The QDQ file the int8 scorer runs for `graph` (weights stored as scorerWeightEncoding, no metadata). */
export function int8ScorerModel(graph: QuantGraph): Uint8Array {
  return quantGraphToQdqOnnx(graph, { weightEncoding: scorerWeightEncoding(graph) });
}

/** Scorer.fingerprint of an ONNX file: its sha256. */
export function onnxFingerprint(model: Uint8Array): string {
  return `sha256:${createHash('sha256').update(model).digest('hex')}`;
}

/**
 * The int8 model on `threads` ORT threads, fingerprinted: the export's file of the same weight
 * storage computes the same (it differs only by metadata), so the export can take this scorer's
 * logits as its own.
 */
export function onnxInt8Scorer(graph: QuantGraph, threads = 1): Promise<Scorer> {
  const model = int8ScorerModel(graph);
  return onnxScorer(model, graph.inputSize, threads, onnxFingerprint(model));
}

/** The float model on `threads` ORT threads. */
export function onnxFloatScorer(graph: FloatGraph, threads = 1): Promise<Scorer> {
  return onnxScorer(floatGraphToOnnx(graph), graph.inputSize, threads);
}
