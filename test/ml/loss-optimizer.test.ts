import { describe, expect, it } from 'vitest';
import { tf } from '../../src/ml/tf.js';
import { smoothedCrossEntropy } from '../../src/ml/loss.js';
import { MomentumSgd } from '../../src/ml/optimizer.js';
import { topKHits } from '../../src/ml/evaluate.js';

await tf.setBackend('cpu');

describe('smoothedCrossEntropy', () => {
  it('matches the hand-computed smoothed target loss', () => {
    // logits [0, ln 2, ln 3] -> softmax [1/6, 2/6, 3/6]; label 2; eps 0.3 over K = 3:
    // target [0.1, 0.1, 0.8]; loss = -(0.1 ln(1/6) + 0.1 ln(2/6) + 0.8 ln(3/6)).
    const want = -(0.1 * Math.log(1 / 6) + 0.1 * Math.log(2 / 6) + 0.8 * Math.log(3 / 6));
    const got = tf.tidy(() => smoothedCrossEntropy(tf.tensor2d([[0, Math.log(2), Math.log(3)]]), tf.tensor1d([2], 'int32'), 0.3).dataSync()[0]);
    expect(got).toBeCloseTo(want, 5);
    const plain = tf.tidy(() => smoothedCrossEntropy(tf.tensor2d([[0, Math.log(2), Math.log(3)]]), tf.tensor1d([2], 'int32'), 0).dataSync()[0]);
    expect(plain).toBeCloseTo(Math.log(2), 5);
  });
});

describe('MomentumSgd', () => {
  it('applies v = m v + g + wd w; w -= lr v, with decay only where asked', () => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const b = tf.variable(tf.tensor1d([0.5]));
    const sgd = new MomentumSgd({ momentum: 0.9, weightDecay: 0.1 });
    const params = [
      { name: 'w', variable: w, decay: true },
      { name: 'b', variable: b, decay: false },
    ];
    const step = (gw: number[], gb: number[]) => {
      const grads = new Map([
        ['w', tf.tensor1d(gw)],
        ['b', tf.tensor1d(gb)],
      ]);
      sgd.step(params, grads, 0.5);
      for (const g of grads.values()) g.dispose();
    };
    step([1, 1], [2]);
    // v_w = g + 0.1 w = [1.1, 0.8]; w = [1 - 0.55, -2 - 0.4] = [0.45, -2.4]; v_b = 2; b = -0.5
    expect(Array.from(w.dataSync())[0]).toBeCloseTo(0.45, 6);
    expect(Array.from(w.dataSync())[1]).toBeCloseTo(-2.4, 6);
    expect(b.dataSync()[0]).toBeCloseTo(-0.5, 6);
    step([0, 0], [0]);
    // v_w = 0.9 [1.1, 0.8] + 0.1 [0.45, -2.4] = [1.035, 0.48]; w = [0.45 - 0.5175, -2.4 - 0.24]
    expect(Array.from(w.dataSync())[0]).toBeCloseTo(-0.0675, 6);
    expect(Array.from(w.dataSync())[1]).toBeCloseTo(-2.64, 6);
    // v_b = 0.9 * 2 = 1.8; b = -0.5 - 0.9 = -1.4
    expect(b.dataSync()[0]).toBeCloseTo(-1.4, 6);
    sgd.dispose();
    w.dispose();
    b.dispose();
  });
});

describe('topKHits', () => {
  it('counts top-1 and top-k hits, ties counting against', () => {
    const logits = Float32Array.from([
      0.1,
      0.9,
      0.0, // label 1: top-1
      0.5,
      0.2,
      0.3, // label 2: second -> top-2 only
      0.4,
      0.4,
      0.2, // label 1 tied with class 0: not top-1, within top-2
      0.1,
      0.2,
      0.7, // label 0: third
    ]);
    expect(topKHits(logits, Int32Array.from([1, 2, 1, 0]), 3, 2)).toEqual({ top1: 1, topk: 3 }); // rows 1-3 are in the top 2, only row 1 is top-1
  });
});
