import { describe, expect, it } from 'vitest';
import { tf } from '../../src/ml/tf.js';
import { BN_EPS, BN_MOMENTUM, foldedConvBn, foldFactors, type BnState } from '../../src/ml/conv-bn-fold.js';
import { fakeQuantWeight } from '../../src/ml/fake-quant.js';

await tf.setBackend('cpu');

function bnState(gamma: number[], beta: number[], mean: number[], variance: number[]): BnState {
  return {
    gamma: tf.variable(tf.tensor1d(gamma)),
    beta: tf.variable(tf.tensor1d(beta)),
    runMean: tf.variable(tf.tensor1d(mean), false),
    runVar: tf.variable(tf.tensor1d(variance), false),
  };
}
const disposeBn = (b: BnState) => [b.gamma, b.beta, b.runMean, b.runVar].forEach((v) => v.dispose());
const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

describe('conv + batch norm folded into the conv', () => {
  it('computes gamma * (conv - mean) / sqrt(var + eps) + beta by hand on a 1x1 example', () => {
    const bn = bnState([2], [1], [4], [3]);
    const w = tf.variable(tf.tensor4d([3], [1, 1, 1, 1]));
    const y = tf.tidy(
      () =>
        foldedConvBn(tf.tensor4d([2], [1, 1, 1, 1]), w, bn, {
          kind: 'conv',
          stride: 1,
          pad: 0,
          quantizeWeights: false,
          batchStats: false,
        }).dataSync()[0],
    );
    // conv = 2 * 3 = 6; 2 * (6 - 4) / sqrt(3 + 0.001) + 1 = 3.309010...
    expect(y).toBeCloseTo(1 + 4 / Math.sqrt(3 + BN_EPS), 5);
    disposeBn(bn);
    w.dispose();
  });

  it('equals conv -> BN in eval mode (conv and depthwise, stride 2, padding 1)', () => {
    const c = 5;
    for (const kind of ['conv', 'dw'] as const) {
      const bn = bnState([1.5, -0.7, 0.3, 2, 0.9], [0.1, -0.2, 0.5, 0, 1], [0.3, -1, 2, 0.5, 0], [0.5, 2, 0.1, 1.3, 4]);
      const shape = kind === 'conv' ? [3, 3, 4, c] : [3, 3, c, 1];
      const w = tf.variable(tf.randomNormal(shape, 0, 0.5, 'float32', 7));
      const x = tf.randomNormal<tf.Rank.R4>([2, 7, 7, kind === 'conv' ? 4 : c], 0, 1, 'float32', 8);
      const diff = tf.tidy(() => {
        const folded = foldedConvBn(x, w, bn, { kind, stride: 2, pad: 1, quantizeWeights: false, batchStats: false });
        const conv = kind === 'conv' ? tf.conv2d(x, w as tf.Tensor4D, 2, 1) : tf.depthwiseConv2d(x, w as tf.Tensor4D, 2, 1);
        const ref = tf.batchNorm(conv, bn.runMean, bn.runVar, bn.beta, bn.gamma, BN_EPS);
        expect(folded.shape).toEqual([2, 4, 4, c]);
        return maxAbsDiff(folded, ref);
      });
      expect(diff).toBeLessThan(1e-5);
      disposeBn(bn);
      w.dispose();
      x.dispose();
    }
  });

  it('quantizes exactly the folded weights: conv(x, fq(W)) * k + b == conv(x, fq(W * k)) + b', () => {
    // Negative gamma flips the channel's sign; per-channel symmetric quantization commutes with it.
    const bn = bnState([1.5, -0.7, 0.3], [0.1, -0.2, 0.5], [0.3, -1, 2], [0.5, 2, 0.1]);
    const w = tf.variable(tf.randomNormal([3, 3, 2, 3], 0, 0.5, 'float32', 3));
    const x = tf.randomNormal<tf.Rank.R4>([1, 6, 6, 2], 0, 1, 'float32', 4);
    const { k, bias } = foldFactors({
      gamma: bn.gamma.dataSync() as Float32Array,
      beta: bn.beta.dataSync() as Float32Array,
      runMean: bn.runMean.dataSync() as Float32Array,
      runVar: bn.runVar.dataSync() as Float32Array,
    });
    const diff = tf.tidy(() => {
      const ours = foldedConvBn(x, w, bn, { kind: 'conv', stride: 1, pad: 1, quantizeWeights: true, batchStats: false });
      const foldedW = tf.mul(w, tf.tensor1d(k));
      const ref = tf.add(tf.conv2d(x, fakeQuantWeight(foldedW, 3) as tf.Tensor4D, 1, 1), tf.tensor1d(bias));
      return maxAbsDiff(ours, ref);
    });
    expect(diff).toBeLessThan(1e-5);
    disposeBn(bn);
    w.dispose();
    x.dispose();
  });

  it('uses batch statistics in training and moves the running ones by momentum', () => {
    const bn = bnState([1, 2], [0, 1], [0, 0], [1, 1]);
    const w = tf.variable(tf.tensor4d([1, 0, 0, 1], [1, 1, 2, 2])); // identity 1x1 conv
    // Channel 0 values {1, 3, 5, 7}: mean 4, biased var 5, unbiased 20/3.
    // Channel 1 values {2, 2, 2, 2}: mean 2, var 0 -> output beta = 1 everywhere.
    const x = tf.tensor4d([1, 2, 3, 2, 5, 2, 7, 2], [1, 2, 2, 2]);
    const y = tf.tidy(() =>
      Array.from(
        foldedConvBn(x, w, bn, {
          kind: 'conv',
          stride: 1,
          pad: 0,
          quantizeWeights: false,
          batchStats: true,
        }).dataSync(),
      ),
    );
    const s = Math.sqrt(5 + BN_EPS);
    [1, 3, 5, 7].forEach((v, i) => expect(y[2 * i]).toBeCloseTo((v - 4) / s, 5));
    [1, 3, 5, 7].forEach((_, i) => expect(y[2 * i + 1]).toBeCloseTo(1, 6));
    const m = 1 - BN_MOMENTUM;
    expect(Array.from(bn.runMean.dataSync())[0]).toBeCloseTo(m * 4, 6);
    expect(Array.from(bn.runMean.dataSync())[1]).toBeCloseTo(m * 2, 6);
    expect(Array.from(bn.runVar.dataSync())[0]).toBeCloseTo(BN_MOMENTUM + m * (20 / 3), 5);
    expect(Array.from(bn.runVar.dataSync())[1]).toBeCloseTo(BN_MOMENTUM, 6);
    disposeBn(bn);
    w.dispose();
    x.dispose();
  });

  it('stays finite, forward and backward, for a channel whose gamma is 0', () => {
    // PyTorch 1.13's QAT ConvBn divides by the folded scale and returns NaN here. Channel 0 has
    // gamma 0 and a constant input (variance 0), the worst case.
    for (const batchStats of [true, false]) {
      const bn = bnState([0, 1], [0.25, 0], [0, 0], [0, 1]);
      const w = tf.variable(tf.tensor4d([0.5, 0, 0, 1, 0.2, -0.3], [1, 1, 3, 2]));
      const x = tf.tensor4d([1, 2, 0, 1, -1, 3, 1, 0, 2, 1, 5, -2], [1, 2, 2, 3]);
      const { out, grads } = tf.tidy(() => {
        const f = (xi: tf.Tensor, wi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
          const state = { ...bn, gamma: g, beta: b } as unknown as BnState;
          return tf.sum(
            tf.square(
              foldedConvBn(xi as tf.Tensor4D, wi as tf.Variable, state, {
                kind: 'conv',
                stride: 1,
                pad: 0,
                quantizeWeights: true,
                batchStats,
              }),
            ),
          );
        };
        const out = foldedConvBn(x, w, bn, { kind: 'conv', stride: 1, pad: 0, quantizeWeights: true, batchStats });
        const grads = tf.grads(f)([x, w, bn.gamma, bn.beta]);
        return { out: Array.from(out.dataSync()), grads: grads.map((g) => Array.from(g.dataSync())) };
      });
      // Channel 0 is the constant beta.
      [0, 2, 4, 6].forEach((i) => expect(out[i]).toBeCloseTo(0.25, 6));
      expect(out.every(Number.isFinite)).toBe(true);
      for (const g of grads) expect(g.every(Number.isFinite)).toBe(true);
      // d/dbeta0 of sum(y^2) = 2 * sum(y over channel 0) = 2 * 4 * 0.25 = 2.
      expect(grads[3][0]).toBeCloseTo(2, 5);
      disposeBn(bn);
      w.dispose();
      x.dispose();
    }
  });
});
