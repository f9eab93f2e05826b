// Whole-model gradient check: a MobileNetV2-shaped QAT network (stem, inverted residual blocks with
// stride-2 depthwise convs and residual adds, head, pooling, dense, softmax cross-entropy), every
// trainable gradient on wasm with the training kernels and fused ops, against tfjs's cpu backend
// running the stock formulation.
import { afterAll, describe, expect, test } from 'vitest';
import { batchNormTrain, fakeQuantAct, fakeQuantWeight } from '../../../src/ml/backends/wasm-training/index.js';
import { tf, useBackend } from './helpers.js';
import { forwardLoss, initParams, makeBatch, mobilenetArch, stockQatOps, type QatOps } from '../../../testkit/mobilenet-like.js';

const fusedOps: QatOps = { batchNormTrain, fakeQuantAct, fakeQuantWeight };
const report: string[] = [];

async function gradsOn(backend: 'cpu' | 'wasm', ops: QatOps, fakeQuant: boolean) {
  await useBackend(backend);
  // 24 px input: the CIFAR stem keeps 24x24 through the first stages, then stride 2 to 12 and 6.
  const arch = mobilenetArch(0.35, 24, 10, 7);
  const params = initParams(arch, 3);
  const { x, labels } = makeBatch(arch, 3, 5);
  const { value, grads } = tf.variableGrads(() => forwardLoss(arch, params, x, labels, { fakeQuant, ops }));
  const names = [...params.keys()];
  const byName = new Map<string, Float32Array>();
  for (const [n, v] of params) byName.set(n, grads[v.name].dataSync() as Float32Array);
  const loss = value.dataSync()[0];
  tf.dispose([value, x, labels, ...Object.values(grads), ...params.values()]);
  return { loss, names, byName };
}

describe('whole-model gradients on wasm equal the cpu backend', () => {
  afterAll(() => console.log(report.join('\n')));

  for (const fakeQuant of [false, true]) {
    test(`MobileNetV2-shaped, ${fakeQuant ? 'QAT (fake quant on)' : 'float'}: every parameter gradient`, async () => {
      const ref = await gradsOn('cpu', stockQatOps, fakeQuant);
      const got = await gradsOn('wasm', fusedOps, fakeQuant);
      expect(Math.abs(got.loss - ref.loss)).toBeLessThan((fakeQuant ? 2e-3 : 1e-5) * Math.abs(ref.loss));
      // Some gradients are zero in exact arithmetic (e.g. a beta feeding a batch-normalized conv:
      // BN removes any per-channel shift) and only float noise on both backends; measure every
      // error against at least 1e-4 of the largest gradient in the model.
      let globalMax = 0;
      for (const g of ref.byName.values()) for (const v of g) globalMax = Math.max(globalMax, Math.abs(v));
      let worst = 0;
      let worstName = '';
      let close = 0;
      let total = 0;
      for (const n of ref.names) {
        const a = got.byName.get(n)!;
        const b = ref.byName.get(n)!;
        let diff = 0;
        let scale = 1e-4 * globalMax;
        for (let i = 0; i < a.length; i++) {
          diff = Math.max(diff, Math.abs(a[i] - b[i]));
          scale = Math.max(scale, Math.abs(b[i]));
        }
        for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) <= 1e-3 * scale) close++;
        total += a.length;
        if (diff / scale > worst) {
          worst = diff / scale;
          worstName = n;
        }
      }
      report.push(
        `whole model ${fakeQuant ? 'QAT  ' : 'float'} ${ref.names.length} parameters: loss ${ref.loss.toFixed(6)} vs ${got.loss.toFixed(6)}, max rel err ${worst.toExponential(2)} (${worstName}), ` +
          `${((100 * close) / total).toFixed(2)}% of ${total} entries within 1e-3`,
      );
      if (fakeQuant) {
        // Fake quant is a step function: a 1-ulp difference in a conv output (XNNPACK vs the cpu
        // loops) moves a value across a rounding boundary, a whole quantum, and a few gradient
        // entries downstream with it. The fused fake-quant kernels themselves are bit-exact
        // (qat-ops.test.ts); here almost every entry must agree, and the outliers stay bounded.
        expect(close / total).toBeGreaterThan(0.98);
        expect(worst).toBeLessThan(0.2);
      } else {
        expect(worst).toBeLessThan(1e-3);
        expect(close / total).toBeGreaterThan(0.999);
      }
    });
  }
});
