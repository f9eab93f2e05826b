// A trained model loaded from a checkpoint, for export and verification: the fake-quant eval model
// (running BN statistics, frozen ranges) and its int8 QuantGraph.
import { tf } from './tf.js';
import { loadCheckpoint } from './checkpoint.js';
import { buildArch, MobileNetV2 } from './mobilenet-v2.js';
import { restoreState } from './model-state.js';
import { toQuantGraph } from './to-quant-graph.js';
import { Int8GraphRunner } from './int8-graph-runner.js';
import { evalBatchSize } from './evaluate.js';
import type { QuantGraph } from './quant-graph.js';
import type { ForwardMode } from './mobilenet-v2.js';

export interface TrainedModel {
  classes: string[];
  inputSize: number;
  normalization: QuantGraph['normalization'];
  /** Checkpoint step the weights come from. */
  step: number;
  toQuantGraph(): QuantGraph;
  /** Logits [n, classes] of the quantized eval model (its int8 graph, run in tfjs) for NHWC normalized input. */
  predict(x: Float32Array, n: number): Promise<Float32Array>;
  /** Same, with fake quantization off (the float model). */
  predictFloat(x: Float32Array, n: number): Promise<Float32Array>;
  dispose(): void;
}

/** Loads a checkpoint directory (or a run's work/checkpoints directory: its newest checkpoint). */
export async function loadTrainedModel(checkpointDir: string): Promise<TrainedModel> {
  const ck = await loadCheckpoint(checkpointDir);
  const m = ck.manifest;
  const arch = buildArch({ ...m.config.model, numClasses: m.classes.length });
  // Checkpoints written before weightBits existed were trained on the 8-bit grid.
  const model = new MobileNetV2(arch, m.config.quantization.emaDecay, m.config.training.seed, m.config.quantization.weightBits ?? 8);
  restoreState(model, null, ck.tensors, true);
  model.ranges.load(m.ranges);
  const size = arch.inputSize;

  // The quantized model runs as its int8 graph in integers (see int8-graph-runner.ts), built once.
  let int8: Int8GraphRunner | null = null;
  const run = async (x: Float32Array, n: number, fakeQuant: boolean): Promise<Float32Array> => {
    if (x.length !== n * size * size * 3) throw new RangeError(`predict: expected ${n}x${size}x${size}x3 values, got ${x.length}`);
    const mode: ForwardMode = { training: false, fakeQuant: false, bnBatchStats: false, observeRanges: false };
    if (fakeQuant) int8 ??= new Int8GraphRunner(toQuantGraph(model, m.classes, m.normalization));
    const forward = (t: tf.Tensor4D) => (fakeQuant ? int8!.run(t) : model.forward(t, mode));
    const out = new Float32Array(n * arch.numClasses);
    const batch = evalBatchSize(size);
    for (let lo = 0; lo < n; lo += batch) {
      const hi = Math.min(n, lo + batch);
      const t = tf.tidy(() => forward(tf.tensor4d(x.subarray(lo * size * size * 3, hi * size * size * 3), [hi - lo, size, size, 3])));
      out.set(await t.data(), lo * arch.numClasses);
      t.dispose();
    }
    return out;
  };

  return {
    classes: m.classes,
    inputSize: size,
    normalization: m.normalization,
    step: m.step,
    toQuantGraph: () => toQuantGraph(model, m.classes, m.normalization),
    predict: (x, n) => run(x, n, true),
    predictFloat: (x, n) => run(x, n, false),
    dispose: () => {
      int8?.dispose();
      model.dispose();
    },
  };
}
