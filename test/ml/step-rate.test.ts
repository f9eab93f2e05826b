import { describe, expect, it } from 'vitest';
import { StepRate } from '../../src/ml/step-rate.js';

describe('StepRate', () => {
  it('reports the first step alone, then images over the time of the window, without the first', () => {
    const r = new StepRate(3);
    expect(r.add(8, 4000)).toBe(2); // warm-up step: 8 images in 4 s
    expect(r.add(8, 1000)).toBe(8); // the warm-up is no longer counted
    expect(r.add(8, 3000)).toBe(4); // 16 images in 4 s
    expect(r.add(4, 1000)).toBe(4); // 20 images in 5 s
    expect(r.add(8, 1000)).toBeCloseTo(20 / 5); // window of 3: 3000 + 1000 + 1000 ms, 20 images
    expect(r.add(8, 1000)).toBeCloseTo(20 / 3);
  });

  it('rejects a window that is not a positive integer', () => {
    expect(() => new StepRate(0)).toThrow(RangeError);
    expect(() => new StepRate(1.5)).toThrow(RangeError);
  });
});
