import { describe, expect, it } from 'vitest';
import { combineMoments, shardRows, sumInOrder } from '../../../src/ml/data-parallel/collective-math.js';

/** Per-channel mean and M2 of rows [c values each], in float64, two passes. */
function moments(rows: number[][]): { rows: number; mean: number[]; m2: number[] } {
  const c = rows[0].length;
  const mean = Array.from({ length: c }, (_, j) => rows.reduce((a, r) => a + r[j], 0) / rows.length);
  const m2 = Array.from({ length: c }, (_, j) => rows.reduce((a, r) => a + (r[j] - mean[j]) ** 2, 0));
  return { rows: rows.length, mean, m2 };
}

describe('data-parallel arithmetic', () => {
  it('splits a batch into contiguous shares that cover it once and differ in size by at most one', () => {
    for (const [n, world] of [
      [8, 2],
      [7, 2],
      [16, 3],
      [3, 3],
    ]) {
      const shares = Array.from({ length: world }, (_, r) => shardRows(n, r, world));
      expect(shares[0].start).toBe(0);
      expect(shares[world - 1].end).toBe(n);
      for (let r = 1; r < world; r++) expect(shares[r].start).toBe(shares[r - 1].end);
      const sizes = shares.map((s) => s.end - s.start);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });

  it("combines per-rank moments into the whole batch's, also when the mean dwarfs the spread", () => {
    // Channel 1 has mean 1e4 and spread 1e-2: sum-of-squares minus squared mean would lose it all.
    const rows = Array.from({ length: 37 }, (_, i) => [Math.sin(i), 1e4 + 1e-2 * Math.cos(3 * i), i % 5]);
    const whole = moments(rows);
    const parts = [moments(rows.slice(0, 12)), moments(rows.slice(12, 13)), moments(rows.slice(13))];
    const got = combineMoments(parts);
    expect(got.rows).toBe(37);
    for (let j = 0; j < 3; j++) {
      expect(got.mean[j]).toBeCloseTo(whole.mean[j], 9);
      expect(got.m2[j] / whole.m2[j]).toBeCloseTo(1, 9);
    }
  });

  it('sums in rank order', () => {
    expect([
      ...sumInOrder([
        [1, 2],
        [10, 20],
        [100, 200],
      ]),
    ]).toEqual([111, 222]);
  });
});
