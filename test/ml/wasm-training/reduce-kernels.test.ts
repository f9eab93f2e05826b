// The wasm Min/Max replacements (SIMD over every element) against the cpu backend and the stock
// wasm kernels: exact values (a min or max is an element of the input), every length class of the
// 16-element main loop and its tail, keepDims, NaN propagation, and the partial-axis fallback.
import { afterAll, describe, expect, test } from 'vitest';
import { setSimdEnabled } from '../../../src/ml/backends/wasm-training/simd.js';
import { range } from '../../../src/ml/backends/wasm-training/ops.js';
import { randomValues, tf, useBackend } from './helpers.js';

async function reduceOn(backend: 'cpu' | 'wasm', op: 'min' | 'max', values: Float32Array, shape: number[], axis?: number[], keepDims = false) {
  await useBackend(backend);
  return tf.tidy(() => {
    const r = tf[op](tf.tensor(values, shape, 'float32'), axis, keepDims);
    return { values: Array.from(r.dataSync()), shape: r.shape };
  });
}

describe('wasm Min/Max over every element', () => {
  afterAll(() => setSimdEnabled(true));

  // 1, 3 (tail only), 16, 17, 63, 64, 1000 elements; large offset so min and max are not +-1.
  const shapes = [[1], [3], [2, 8], [17], [3, 3, 7], [4, 4, 4], [2, 10, 10, 5]];
  for (const shape of shapes) {
    for (const op of ['min', 'max'] as const) {
      test(`${op} ${shape}`, async () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const v = randomValues(n, 90 + n).map((x, i) => x * 3 + (i % 5) - 7);
        // The extreme as the very last element (the tail loop, or the last vector).
        const ref = await reduceOn('cpu', op, v, shape);
        const got = await reduceOn('wasm', op, v, shape);
        expect(got).toEqual(ref);
        const w = v.slice();
        w[n - 1] = op === 'max' ? 1e6 : -1e6;
        expect((await reduceOn('wasm', op, w, shape)).values).toEqual([w[n - 1]]);
        const kept = await reduceOn('wasm', op, v, shape, undefined, true);
        expect(kept.shape).toEqual(shape.map(() => 1));
        expect(kept.values).toEqual(ref.values);
      });
    }
  }

  test("range(x) (the range observers' read, no kernel) gives the cpu backend's min and max, NaN included", async () => {
    for (const n of [1, 3, 17, 1000]) {
      const v = randomValues(n, 40 + n).map((x, i) => x * 3 + (i % 5) - 7);
      const want = { min: (await reduceOn('cpu', 'min', v, [n])).values[0], max: (await reduceOn('cpu', 'max', v, [n])).values[0] };
      await useBackend('wasm');
      const x = tf.tensor(v, [n]);
      expect(range(x)).toEqual(want);
      v[n - 1] = NaN;
      const y = tf.tensor(v, [n]);
      const r = range(y);
      expect(Number.isNaN(r.min) && Number.isNaN(r.max)).toBe(true);
      x.dispose();
      y.dispose();
    }
  });

  test('a NaN anywhere gives NaN, as the stock wasm and the cpu kernels', async () => {
    for (const at of [0, 7, 33, 39]) {
      const v = randomValues(40, 5);
      v[at] = NaN;
      for (const op of ['min', 'max'] as const) {
        setSimdEnabled(false); // our kernel hands over to the stock one
        const stock = await reduceOn('wasm', op, v, [40]);
        setSimdEnabled(true);
        expect(Number.isNaN(stock.values[0])).toBe(true);
        expect(Number.isNaN((await reduceOn('wasm', op, v, [40])).values[0])).toBe(true);
        expect(Number.isNaN((await reduceOn('cpu', op, v, [40])).values[0])).toBe(true);
      }
    }
  });

  test('reductions over some axes still go to the stock kernels', async () => {
    const v = randomValues(2 * 5 * 6, 7);
    for (const op of ['min', 'max'] as const) {
      for (const axis of [[1], [0, 2], [2]]) {
        expect(await reduceOn('wasm', op, v, [2, 5, 6], axis)).toEqual(await reduceOn('cpu', op, v, [2, 5, 6], axis));
      }
    }
  });
});
