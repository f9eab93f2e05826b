import { describe, expect, it } from 'vitest';
import { trainingEndsAt } from '../../src/jobs/training-eta.js';

describe('trainingEndsAt', () => {
  it("carries the run's pace since it (re)started on to the last step", () => {
    // Started at step 0 at t = 0; 10 steps in 60 s: 6 s a step, 40 steps left.
    expect(trainingEndsAt({ at: 0, step: 0 }, 60_000, 10, 50)).toBe(60_000 + 40 * 6_000);
    // A run resumed at step 30: only its own steps set the pace (10 in 20 s), 10 left.
    expect(trainingEndsAt({ at: 100_000, step: 30 }, 120_000, 40, 50)).toBe(120_000 + 10 * 2_000);
  });

  it('has no estimate before the run has stepped, nor from its last step', () => {
    expect(trainingEndsAt({ at: 0, step: 30 }, 5_000, 30, 50)).toBeNull();
    expect(trainingEndsAt({ at: 0, step: 0 }, 5_000, 50, 50)).toBeNull();
  });
});
