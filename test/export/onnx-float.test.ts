// The float network on ONNX Runtime (toFloatGraph -> floatGraphToOnnx -> onnxFloatScorer), which
// scores a run's float evaluations: it must compute what the model's own evaluation forward pass
// computes, batch norm on the running statistics, before any activation range exists.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/ml/tf.js';
import { buildArch, MobileNetV2 } from '../../src/ml/mobilenet-v2.js';
import { evalMode } from '../../src/ml/train.js';
import { toFloatGraph } from '../../src/ml/to-float-graph.js';
import { onnxFloatScorer } from '../../src/export/onnx-scorer.js';
import { resolveTrainingConfig } from '../../src/config/training-config.js';
import { loadDataset } from '../../src/data/index.js';

await tf.setBackend('cpu');
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'qatserve-float-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

const argmax = (l: Float32Array, row: number, k: number) => {
  let best = 0;
  for (let c = 1; c < k; c++) if (l[row * k + c] > l[row * k + best]) best = c;
  return best;
};

describe('the float model on ONNX Runtime', () => {
  for (const smallInputStem of ['on', 'off'] as const) {
    it(`computes the model's evaluation logits (smallInputStem ${smallInputStem})`, async () => {
      const config = resolveTrainingConfig({
        dataset: { type: 'synthetic', classes: 4, samplesPerClass: 8, valPerClass: 6 },
        model: { widthMultiplier: 0.1, inputSize: 32, smallInputStem },
      });
      const ds = await loadDataset(config.dataset, { dataRoot: tmp, inputSize: 32 });
      const model = new MobileNetV2(buildArch({ ...config.model, numClasses: ds.classes.length }), 0.9, 3, 7);
      // A negative and a zero gamma: the fold's sign and a dead channel.
      const setChannel = (name: string, c: number, v: number) => {
        const vals = model.v(name).dataSync().slice();
        vals[c] = v;
        model.v(name).assign(tf.tensor1d(vals));
      };
      setChannel('stem/gamma', 1, -0.8);
      setChannel('block2/expand/gamma', 0, 0);
      setChannel('block3/project/beta', 2, 0.7);
      setChannel('classifier/b', 1, 0.3);
      // Running statistics from real batches; no activation range is observed.
      const train = await ds.train.batch(
        Array.from({ length: 8 }, (_, i) => i * 4),
        { augment: false, seed: 1, epoch: 0, step: 0 },
      );
      for (let i = 0; i < 4; i++) {
        tf.tidy(() => {
          model.forward(tf.tensor4d(train.x, [train.n, 32, 32, 3]), { training: false, fakeQuant: false, bnBatchStats: true, observeRanges: false });
        });
      }
      expect(model.quantPoints().some((n) => model.ranges.get(n))).toBe(false);
      const val = await ds.val.batch(
        Array.from({ length: 24 }, (_, i) => i),
        { augment: false, seed: 1, epoch: 0, step: 0 },
      );
      const own = tf.tidy(() => model.forward(tf.tensor4d(val.x, [val.n, 32, 32, 3]), evalMode(false)).dataSync() as Float32Array);
      const scorer = await onnxFloatScorer(toFloatGraph(model), 2);
      let ort: Float32Array;
      try {
        ort = await scorer.logits(val.x, val.n);
      } finally {
        await scorer.release();
        model.dispose();
      }
      expect(ort).toHaveLength(own.length);
      const k = ds.classes.length;
      const scale = Math.max(...Array.from(own, Math.abs));
      expect(scale).toBeGreaterThan(0.01);
      let maxDiff = 0;
      for (let i = 0; i < own.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ort[i] - own[i]));
      // Float rounding only: the fold multiplies the weights by k where tfjs scales the conv's output.
      expect(maxDiff / scale).toBeLessThan(1e-4);
      for (let r = 0; r < val.n; r++) expect(argmax(ort, r, k)).toBe(argmax(own, r, k));
    });
  }
});
