// toQuantGraph against the fake-quant model: an integer reference run of the exported graph
// (int8 weights, uint8 activations, int32 accumulation, as ONNX Runtime's QLinear* kernels)
// must reproduce predict() of the checkpoint's fake-quant eval model.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/ml/tf.js';
import { buildArch, MobileNetV2 } from '../../src/ml/mobilenet-v2.js';
import { saveCheckpoint } from '../../src/ml/checkpoint.js';
import { snapshotState } from '../../src/ml/model-state.js';
import { loadTrainedModel } from '../../src/ml/trained-model.js';
import { runIntegerReference } from '../../src/export/qdq-reference.js';
import { nhwcToNchw } from '../../src/export/verify.js';
import { resolveTrainingConfig } from '../../src/config/training-config.js';
import { loadDataset, NORMALIZATION } from '../../src/data/index.js';

await tf.setBackend('cpu');
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'qatserve-qg-'));
afterAll(() => (process.env.KEEP_TMP ? undefined : fs.rm(tmp, { recursive: true, force: true })));

const config = resolveTrainingConfig({
  dataset: { type: 'synthetic', classes: 4, samplesPerClass: 8, valPerClass: 4 },
  // The paper's strides (stride-2 stem and stages: asymmetric-looking explicit pads get exercised).
  model: { widthMultiplier: 0.1, inputSize: 32, smallInputStem: 'off' },
});

describe('toQuantGraph', () => {
  it('matches the fake-quant model: integer reference within 1 logit step, same top-1', async () => {
    const ds = await loadDataset(config.dataset, { dataRoot: tmp, inputSize: 32 });
    const classes = ds.classes;
    const arch = buildArch({ ...config.model, numClasses: classes.length });
    // The checkpoint's config says which weight grid the model trained on (7 bits by default).
    const model = new MobileNetV2(arch, 0.9, 3, config.quantization.weightBits);
    // A negative gamma (sign folded into the int8 weights) and a zero gamma (a dead channel).
    const setChannel = (name: string, c: number, v: number) => {
      const g = model.v(name);
      const vals = g.dataSync().slice();
      vals[c] = v;
      g.assign(tf.tensor1d(vals));
    };
    setChannel('stem/gamma', 1, -0.8);
    setChannel('block2/expand/gamma', 0, 0);
    setChannel('block3/project/beta', 2, 0.7);
    setChannel('classifier/b', 1, 0.3);
    // Calibrate BN running statistics and activation ranges on real batches, as training would.
    const batch = await ds.train.batch(
      Array.from({ length: 8 }, (_, i) => (i * 5) % 32),
      { augment: false, seed: 1, epoch: 0, step: 0 },
    );
    for (let i = 0; i < 10; i++) {
      tf.tidy(() => {
        model.forward(tf.tensor4d(batch.x, [batch.n, 32, 32, 3]), { training: false, fakeQuant: false, bnBatchStats: true, observeRanges: true });
      });
    }
    // The float fake-quant eval forward of the model itself: what toQuantGraph must reproduce.
    const val = await ds.val.batch(
      Array.from({ length: 16 }, (_, i) => i),
      { augment: false, seed: 1, epoch: 0, step: 0 },
    );
    const fakeQuantLogits = tf.tidy(() =>
      model.forward(tf.tensor4d(val.x, [val.n, 32, 32, 3]), { training: false, fakeQuant: true, bnBatchStats: false, observeRanges: false }),
    );
    const floatFq = (await fakeQuantLogits.data()) as Float32Array;
    fakeQuantLogits.dispose();
    const dir = await saveCheckpoint(
      path.join(tmp, 'checkpoints'),
      {
        step: 25,
        epoch: 1,
        stepsPerEpoch: 25,
        backend: 'cpu',
        config,
        classes,
        inputSize: 32,
        normalization: { mean: [...NORMALIZATION.mean], std: [...NORMALIZATION.std] },
        ranges: model.ranges.toJSON(),
        data: { seed: 1, epochIndex: 1, stepInEpoch: 0 },
      },
      await snapshotState(model, null),
      2,
    );
    model.dispose();

    const trained = await loadTrainedModel(dir);
    const g = trained.toQuantGraph();

    // Structure: every conv, add, pool and the classifier, quantized; ReLU6 grids inside [0, 6].
    expect(g.nodes.filter((n) => n.op === 'conv')).toHaveLength(52);
    // At width 0.1 more blocks keep their channel count (8 -> 8), so more are residual than the 10
    // of width 1.0; each one gets its own quantized add.
    expect(g.nodes.filter((n) => n.op === 'add')).toHaveLength(arch.blocks.filter((b) => b.residual).length);
    expect(g.nodes.map((n) => n.op).slice(-2)).toEqual(['globalAvgPool', 'dense']);
    expect(g.output).toBe('logits');
    expect(g.weightBits).toBe(7);
    for (const n of g.nodes) {
      if (n.op === 'conv') {
        expect(n.weightInt8.length).toBe((n.outChannels * n.inChannels * n.kernel[0] * n.kernel[1]) / n.group);
        expect(n.pads).toEqual(n.kernel[0] === 3 ? [1, 1, 1, 1] : [0, 0, 0, 0]);
        expect(Math.max(...n.weightInt8.map(Math.abs))).toBeLessThanOrEqual(63);
        expect(n.weightScale.every((s) => s > 0 && Number.isFinite(s))).toBe(true);
        if (n.activation === 'relu6') {
          expect(n.outQuant.zeroPoint).toBe(0);
          expect(n.outQuant.scale * 255).toBeLessThanOrEqual(6);
        }
      }
    }
    const dead = g.nodes.find((n) => n.name === 'block2/expand');
    expect(dead?.op === 'conv' && dead.weightInt8.subarray(0, dead.inChannels).every((v) => v === 0)).toBe(true);

    const logits = await trained.predict(val.x, val.n);
    const ref = runIntegerReference(g, nhwcToNchw(val.x, val.n, 32), val.n);
    const step = g.nodes.at(-1)!.outQuant.scale;
    const argmax = (a: ArrayLike<number>) => Array.prototype.indexOf.call(a, Math.max(...Array.from(a)));
    const compare = (ours: Float32Array) => {
      let agree = 0;
      let maxSteps = 0;
      for (let i = 0; i < val.n; i++) {
        const r = ref.subarray(i * 4, i * 4 + 4);
        const o = ours.subarray(i * 4, i * 4 + 4);
        for (let c = 0; c < 4; c++) maxSteps = Math.max(maxSteps, Math.abs(r[c] - o[c]) / step);
        if (argmax(r) === argmax(o)) agree++;
      }
      return { agree, maxSteps };
    };
    // The exported graph reproduces the model's own fake-quant forward: the eval forward rounds its
    // biases to the int32 grid as the int8 graph does, so the two agree to the step (one step
    // allowed for float32 summation order).
    const vsFakeQuant = compare(floatFq);
    expect(vsFakeQuant.maxSteps).toBeLessThanOrEqual(1);
    expect(vsFakeQuant.agree).toBe(16);
    // predict() runs that graph in integers: it equals the ORT-exact integer emulation.
    const vsPredict = compare(logits);
    expect(vsPredict.maxSteps).toBeLessThanOrEqual(1);
    expect(vsPredict.agree).toBe(16);
    // Not a degenerate comparison: the logits differ between images and are not all saturated.
    expect(new Set(Array.from(logits).map((v) => v.toFixed(4))).size).toBeGreaterThan(8);
    trained.dispose();
  }, 120_000);
});
