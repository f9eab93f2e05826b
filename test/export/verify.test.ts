import { describe, expect, it } from 'vitest';
import { compareLogits, verificationFailure } from '../../src/export/verify.js';

describe('export verification gate', () => {
  // Logits dequantized from one uint8 grid: scale 0.2353 (a range of 60), zero point 128.
  const step = Math.fround(60 / 255);
  const grid = (q: number[]) => Float32Array.from(q, (v) => Math.fround((v - 128) * step));

  it('accepts logits exactly two steps apart despite float32 error in (a - b) / step', () => {
    const a = grid([250, 10, 128, 200]);
    const b = grid([252, 10, 126, 200]);
    const c = compareLogits(a, b, 2, 2, step);
    expect(c.maxLogitDiffSteps).toBeCloseTo(2, 4);
    expect(c.agreement).toBe(1);
    expect(verificationFailure(c)).toBeNull();
  });

  it('rejects three steps, and top-1 disagreement, naming both', () => {
    const a = grid([250, 10, 128, 200]);
    const b = grid([253, 10, 210, 200]);
    const c = compareLogits(a, b, 2, 2, step);
    expect(c.agreement).toBe(0.5);
    expect(c.worstRows).toEqual([0, 1]);
    const why = verificationFailure(c)!;
    expect(why).toContain('top-1 agreement 50.00%');
    expect(why).toContain('up to 82.00 quantization steps');
  });
});
