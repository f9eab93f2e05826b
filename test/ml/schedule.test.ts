import { describe, expect, it } from 'vitest';
import { lrAt } from '../../src/ml/schedule.js';

describe('lrAt: linear warmup then cosine to zero', () => {
  const s = { peak: 0.1, warmupSteps: 4, totalSteps: 14 };
  it('ramps linearly over the warmup steps', () => {
    [0.025, 0.05, 0.075, 0.1].forEach((v, i) => expect(lrAt(s, i)).toBeCloseTo(v, 12));
  });
  it('follows half a cosine over the remaining steps', () => {
    expect(lrAt(s, 4)).toBeCloseTo(0.1, 12); // cos(0)
    expect(lrAt(s, 9)).toBeCloseTo(0.05, 12); // halfway: cos(pi / 2)
    expect(lrAt(s, 14)).toBeCloseTo(0, 12); // end: cos(pi)
    expect(lrAt(s, 6)).toBeCloseTo(0.05 * (1 + Math.cos(Math.PI * 0.2)), 12);
  });
  it('without warmup starts at the peak', () => {
    expect(lrAt({ peak: 0.2, warmupSteps: 0, totalSteps: 10 }, 0)).toBe(0.2);
  });
});
