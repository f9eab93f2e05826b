// One evaluation forward pass, the same code on every thread that scores rows of a validation
// batch: the training thread (train.ts) and, when steps are split, each step peer
// (data-parallel/step-peer-worker.ts).
import { tf } from './tf.js';
import type { ForwardMode, MobileNetV2 } from './mobilenet-v2.js';
import { Int8GraphRunner } from './int8-graph-runner.js';
import { toQuantGraph } from './to-quant-graph.js';
import { NORMALIZATION } from '../data/normalization.js';

/**
 * The forward pass an evaluation scores with: the int8 graph (computed in integers as the export
 * will; built from the model, so every rank's replica builds the same one) or the model in `mode`.
 */
export type EvalForward = { kind: 'int8'; classes: string[] } | { kind: 'model'; mode: ForwardMode };

export interface RowLogits {
  /** Logits (n rows) of n NHWC images at the model's input size. */
  logits: (x: Float32Array, n: number) => Float32Array<ArrayBuffer>;
  dispose(): void;
}

export function rowLogits(model: MobileNetV2, forward: EvalForward): RowLogits {
  const int8 = forward.kind === 'int8' ? new Int8GraphRunner(toQuantGraph(model, forward.classes, NORMALIZATION)) : null;
  const size = model.arch.inputSize;
  return {
    logits: (x, n) => {
      const t = tf.tidy(() => {
        const xs = tf.tensor4d(x, [n, size, size, 3]);
        return forward.kind === 'model' ? model.forward(xs, forward.mode) : int8!.run(xs);
      });
      // A copy of its own: a peer transfers it, which must never take a backend's storage along.
      const out = Float32Array.from(t.dataSync());
      t.dispose();
      return out;
    },
    dispose: () => int8?.dispose(),
  };
}
