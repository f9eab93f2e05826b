// The int8 model as the export writes it (int8-stored weights, the first candidate it verifies), on
// ONNX Runtime, for scoring a training run's evaluations (TrainOptions.int8Scorer). Its integer
// kernels take 0.18 ms per image at 0.35@32 and 2.2-2.6 ms at 1.0@224 on one thread, where the
// int8 graph in tfjs takes 1.4 and 18-19: an evaluation was half of a default Fashion-MNIST epoch.
// The top-1 it reports is then the served file's own.
import type { QuantGraph } from '../ml/quant-graph.js';
import type { Int8Scorer } from '../ml/train-api.js';
import { quantGraphToQdqOnnx } from './onnx-qdq.js';
import { nhwcToNchw, OnnxRunner } from './verify.js';

/** A scorer on `threads` ORT threads (the training step's threads, idle while it scores). */
export async function onnxInt8Scorer(graph: QuantGraph, threads = 1): Promise<Int8Scorer> {
  const runner = await OnnxRunner.create(quantGraphToQdqOnnx(graph, { weightEncoding: 'int8' }), threads);
  const size = graph.inputSize;
  return {
    logits: (x, n) => runner.run(nhwcToNchw(x, n, size), n, size),
    release: () => runner.release(),
  };
}
