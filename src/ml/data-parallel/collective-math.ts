// The arithmetic that makes a step split over several threads equal the one-thread step: how each
// rank's share of the batch is chosen, and how per-rank partial statistics become those of the
// whole batch. Pure functions over plain arrays, always combined in rank order, so every rank
// computes bit-identical results and the model replicas never drift apart.

/** Rows [start, end) of a batch of n that rank `rank` of `world` trains on (contiguous, sizes differ by at most 1). */
export function shardRows(n: number, rank: number, world: number): { start: number; end: number } {
  return { start: Math.floor((rank * n) / world), end: Math.floor(((rank + 1) * n) / world) };
}

/** Per-channel count, mean and sum of squared deviations (M2) of some rows. */
export interface Moments {
  rows: number;
  mean: ArrayLike<number>;
  m2: ArrayLike<number>;
}

/**
 * The moments of the union of disjoint row sets, combined pairwise in the given order (Chan,
 * Golub and LeVeque 1979): stable where sum-of-squares minus squared mean would cancel.
 */
export function combineMoments(parts: Moments[]): { rows: number; mean: Float64Array; m2: Float64Array } {
  const c = parts[0].mean.length;
  const mean = Float64Array.from(parts[0].mean);
  const m2 = Float64Array.from(parts[0].m2);
  let rows = parts[0].rows;
  for (let p = 1; p < parts.length; p++) {
    const b = parts[p];
    const n = rows + b.rows;
    for (let j = 0; j < c; j++) {
      const delta = b.mean[j] - mean[j];
      mean[j] += (delta * b.rows) / n;
      m2[j] += b.m2[j] + (delta * delta * rows * b.rows) / n;
    }
    rows = n;
  }
  return { rows, mean, m2 };
}

/** Element-wise sum of equally long arrays, in the given order. */
export function sumInOrder(parts: ArrayLike<number>[]): Float64Array {
  const out = Float64Array.from(parts[0]);
  for (let p = 1; p < parts.length; p++) {
    const b = parts[p];
    for (let j = 0; j < out.length; j++) out[j] += b[j];
  }
  return out;
}
