import { describe, expect, it } from 'vitest';
import { tf } from '../../src/ml/tf.js';
import { actQParams, fakeQuantAct, fakeQuantValue, fakeQuantWeight, quantizeWeightsPerChannel, roundHalfEven, weightScales } from '../../src/ml/fake-quant.js';
import { effectiveDecay, emaUpdate, RangeTracker } from '../../src/ml/ema-range.js';

await tf.setBackend('cpu');

describe('activation fake quant (uint8, asymmetric)', () => {
  // Grid: scale 0.1, zero point 10 -> representable reals [-1.0, 24.5] in steps of 0.1.
  const p = { scale: 0.1, zeroPoint: 10 };
  const x = [-2, -0.96, 0.04, 0.05, 0.16, 0.26, 30, -1.0];

  it('rounds to the grid (half to even, as ONNX QuantizeLinear) and clamps to the range', () => {
    const y = tf.tidy(() => Array.from(fakeQuantAct(tf.tensor1d(x), p).dataSync()));
    // -2 -> clamp -1.0; -0.96 -> -9.6 -> -10 -> -1.0; 0.04 -> 0; 0.05 -> 0.5 -> 0 (tie to even);
    // 0.16 -> 2 -> 0.2; 0.26 -> 3 -> 0.3; 30 -> clamp 245*0.1 = 24.5; -1.0 stays.
    const want = [-1.0, -1.0, 0, 0, 0.2, 0.3, 24.5, -1.0];
    y.forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    x.forEach((v, i) => expect(fakeQuantValue(v, p)).toBeCloseTo(want[i], 6));
  });

  it('passes the gradient straight through inside the range and zeroes it outside', () => {
    const g = tf.tidy(() => {
      const w = tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8]);
      return Array.from(
        tf
          .grad((t: tf.Tensor) => tf.sum(tf.mul(fakeQuantAct(t, p), w)))(tf.tensor1d(x))
          .dataSync(),
      );
    });
    // -2 and 30 lie outside [-1.0, 24.5]; -1.0 is on the boundary (inside).
    expect(g).toEqual([0, 2, 3, 4, 5, 6, 0, 8]);
  });

  it('nudges ranges so that zero is exact, and keeps ReLU6 grids inside [0, 6]', () => {
    // [-1, 3]: scale 4/255, zero point round(1 / (4/255)) = round(63.75) = 64.
    const a = actQParams(-1, 3);
    expect(a.scale).toBeCloseTo(4 / 255, 7);
    expect(a.zeroPoint).toBe(64);
    expect(fakeQuantValue(0, a)).toBe(0);
    // A range that excludes 0 is widened to include it: [0.5, 2] -> [0, 2].
    expect(actQParams(0.5, 2)).toEqual({ scale: Math.fround(2 / 255), zeroPoint: 0 });
    // ReLU6: zero point 0 and top of the grid never above 6, even for an EMA max of 6.5.
    for (const max of [6, 6.5, 5.999]) {
      const r = actQParams(0, max, true);
      expect(r.zeroPoint).toBe(0);
      expect(r.scale * 255).toBeLessThanOrEqual(6);
      expect(r.scale * 255).toBeGreaterThan(Math.min(max, 6) - 1e-5);
    }
  });

  it('rounds ties to even like tf.round', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, -3]);
    // Beyond int32 (an int32 bias's products) and up to where doubles stop holding fractions.
    const big = [2 ** 31 + 0.5, 2 ** 31 + 1.5, -(2 ** 32) - 2.5, 2 ** 52 - 0.5, 2 ** 52 - 1.5, 2 ** 53, 1e300, Infinity];
    expect(big.map(roundHalfEven)).toEqual([2 ** 31, 2 ** 31 + 2, -(2 ** 32) - 2, 2 ** 52, 2 ** 52 - 2, 2 ** 53, 1e300, Infinity]);
    expect(roundHalfEven(NaN)).toBeNaN();
  });
});

describe('weight fake quant (int8, symmetric, per output channel)', () => {
  // conv filter [kh=1, kw=1, in=2, out=3]: channel o holds w[0][0][i][o].
  const w = [0.503, 0.254, 0, -1.27, 0.127, 0];
  const shape = [1, 1, 2, 3];

  it('uses max|w| / 127 per output channel', () => {
    const s = tf.tidy(() => Array.from(weightScales(tf.tensor(w, shape), 3).dataSync()));
    // channel 0: max(|0.503|, |-1.27|) = 1.27 -> 0.01; channel 1: 0.254 -> 0.002; channel 2: all
    // zero -> the minimum scale 1e-8 (never a division by zero).
    expect(s[0]).toBeCloseTo(0.01, 7);
    expect(s[1]).toBeCloseTo(0.002, 8);
    expect(s[2]).toBeCloseTo(1e-8, 12);
    const js = quantizeWeightsPerChannel(Float32Array.from(w), shape, 3);
    expect(Array.from(js.scales)).toEqual(s);
    // 0.503 / 0.01 = 50.3 -> 50; -1.27 -> -127; 0.254 / 0.002 = 127; 0.127 / 0.002 = 63.5 -> 64 (even).
    expect(Array.from(js.int8)).toEqual([50, 127, 0, -127, 64, 0]);
  });

  it('matches the int8 values times the scale, with an identity gradient', () => {
    const { y, g } = tf.tidy(() => {
      const t = tf.tensor(w, shape);
      const y = Array.from(fakeQuantWeight(t, 3).dataSync());
      const g = Array.from(
        tf
          .grad((v: tf.Tensor) => tf.sum(tf.mul(fakeQuantWeight(v, 3), 3)))(t)
          .dataSync(),
      );
      return { y, g };
    });
    const want = [0.5, 0.254, 0, -1.27, 0.128, 0];
    y.forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    expect(g).toEqual([3, 3, 3, 3, 3, 3]);
  });

  it('quantizes depthwise filters per channel (axis 2)', () => {
    // [kh=1, kw=2, C=2, 1]: channel 0 = {1.27, -0.635}, channel 1 = {0.0254, 0.0127}.
    const js = quantizeWeightsPerChannel(Float32Array.from([1.27, 0.0254, -0.635, 0.0127]), [1, 2, 2, 1], 2);
    expect(js.scales[0]).toBeCloseTo(0.01, 7);
    expect(js.scales[1]).toBeCloseTo(0.0002, 9);
    expect(Array.from(js.int8)).toEqual([127, 127, -64, 64]);
  });
});

describe('7-bit weight fake quant (symmetric [-63, 63], ORT reduce_range)', () => {
  // [kh=1, kw=1, in=2, out=3]: channel 0 = {0.63, -0.2}, channel 1 = {0.252, 0.1}, channel 2 zero.
  const w = [0.63, 0.252, 0, -0.2, 0.1, 0];
  const shape = [1, 1, 2, 3];

  it('uses max|w| / 63 per channel and integers in [-63, 63]', () => {
    const s = tf.tidy(() => Array.from(weightScales(tf.tensor(w, shape), 3, 63).dataSync()));
    expect(s[0]).toBeCloseTo(0.01, 7);
    expect(s[1]).toBeCloseTo(0.004, 8);
    // All-zero channel: the same floor on max|w| as 8 bits, over 63.
    expect(s[2]).toBeCloseTo((1e-8 * 127) / 63, 14);
    const js = quantizeWeightsPerChannel(Float32Array.from(w), shape, 3, 63);
    expect(Array.from(js.scales)).toEqual(s);
    // 0.63 -> 63, 0.252 -> 63, -0.2 / 0.01 -> -20, 0.1 / 0.004 -> 25.
    expect(Array.from(js.int8)).toEqual([63, 63, 0, -20, 25, 0]);
  });

  it('fake-quantizes onto that grid, stock and fused (wasm-training kernel on cpu) alike', async () => {
    const { registerQatOps, fakeQuantWeight: fusedFakeQuantWeight } = await import('../../src/ml/backends/wasm-training/index.js');
    registerQatOps();
    // A larger random filter, so rounding is exercised on many values, not only the hand-picked ones.
    const shape4 = [3, 3, 8, 16];
    const vals = Float32Array.from({ length: 3 * 3 * 8 * 16 }, (_, i) => Math.sin(i * 12.9898) * 0.7);
    const { stock, fused, scales } = tf.tidy(() => {
      const t = tf.tensor(vals, shape4);
      return {
        stock: Array.from(fakeQuantWeight(t, 3, 63).dataSync()),
        fused: Array.from(fusedFakeQuantWeight(t, 3, 63).dataSync()),
        scales: Array.from(weightScales(t, 3, 63).dataSync()),
      };
    });
    const js = quantizeWeightsPerChannel(vals, shape4, 3, 63);
    expect(Math.max(...Array.from(js.int8, Math.abs))).toBe(63);
    const want = Array.from(js.int8, (q, i) => q * scales[i % 16]);
    // `+ 0` turns -0 into 0: a negative value rounding to zero is -0 in one path and 0 in another.
    const plain = (a: number[]) => a.map((v) => v + 0);
    expect(plain(stock)).toEqual(plain(want.map(Math.fround)));
    expect(plain(fused)).toEqual(plain(stock));
  });
});

describe('EMA activation ranges', () => {
  it('starts from the first batch, then blends with weight 1 - decay_t', () => {
    const first = emaUpdate(undefined, { min: -1, max: 2 }, 0.9);
    expect(first).toEqual({ min: -1, max: 2, count: 1 });
    // Second update: decay_1 = min(0.9, 2 / 11) = 0.181818...
    const d = 2 / 11;
    const next = emaUpdate(first, { min: -3, max: 4 }, 0.9);
    expect(next.min).toBeCloseTo(d * -1 + (1 - d) * -3, 12); // -2.636363...
    expect(next.max).toBeCloseTo(d * 2 + (1 - d) * 4, 12); // 3.636363...
    expect(next.count).toBe(2);
  });

  it('reaches the configured decay once warmed up (tf.train.ExponentialMovingAverage num_updates)', () => {
    expect(effectiveDecay(0.999, 0)).toBeCloseTo(0.1, 12);
    expect(effectiveDecay(0.999, 90)).toBeCloseTo(0.91, 12);
    expect(effectiveDecay(0.999, 20_000)).toBe(0.999);
    // Settled range: the plain EMA, 0.999 * 1 + 0.001 * 3.
    const r = emaUpdate({ min: 0, max: 1, count: 50_000 }, { min: 0, max: 3 }, 0.999);
    expect(r.max).toBeCloseTo(1.002, 12);
  });

  it('tracks named ranges and round-trips through JSON', () => {
    const r = new RangeTracker(0.5);
    r.observe('a', { min: 0, max: 4 });
    r.observe('a', { min: -2, max: 2 });
    const d = 2 / 11;
    expect(r.get('a')!.min).toBeCloseTo((1 - d) * -2, 12);
    expect(r.get('a')!.max).toBeCloseTo(d * 4 + (1 - d) * 2, 12);
    const copy = new RangeTracker(0.5);
    copy.load(JSON.parse(JSON.stringify(r.toJSON())));
    expect(copy.get('a')).toEqual(r.get('a'));
  });
});
