// What the training step's kernels and layers ask of the other threads while a batch is split over
// several (data-parallel training with whole-batch batch norm, as PyTorch's SyncBatchNorm). The
// fused batch-norm kernels cannot be handed objects through tfjs attributes, so the collective of
// the step in progress is ambient: set by the step (withCollective) and null otherwise, which
// leaves every single-thread code path exactly as it is.

import type { Moments } from './collective-math.js';

/** Per-channel statistics of some rows of a batch norm's input: moments and extremes. */
export interface ChannelStats extends Moments {
  min: ArrayLike<number>;
  max: ArrayLike<number>;
}

export interface StepCollective {
  readonly rank: number;
  readonly world: number;
  /** Rows of the whole batch per row of this rank's share (N / n): scales row counts such as BN's unbiased-variance factor. */
  readonly batchScale: number;
  /**
   * Whole-batch per-channel statistics from this rank's rows: mean, M2 (sum of squared deviations)
   * and the extremes (a batch norm's input; its output range follows from them).
   */
  bnMoments(local: ChannelStats): ChannelStats;
  /** Whole-batch sums of dy and dy * (x - mean) per channel, for BN's backward pass. */
  bnGradSums(rows: number, sDy: Float64Array, sDyXc: Float64Array): { rows: number; sDy: Float64Array; sDyXc: Float64Array };
  /** The whole batch's minimum and maximum (activation range observers). */
  minMax(min: number, max: number): { min: number; max: number };
}

let active: StepCollective | null = null;

/** The collective of the step running on this thread, or null outside a split step. */
export function activeCollective(): StepCollective | null {
  return active;
}

/** Runs `fn` (a synchronous training step) with `c` as the ambient collective. */
export function withCollective<T>(c: StepCollective, fn: () => T): T {
  active = c;
  try {
    return fn();
  } finally {
    active = null;
  }
}
