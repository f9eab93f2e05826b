// Addresses on the wasm heap go up to 4 GB, past int32: 1.0@224 at batch 16, or batch 128 at 32 px
// with the small-input stem, allocate above 2 GB. JS bitwise ops are signed 32-bit, so pointer
// arithmetic written with them turned such addresses negative ("Start offset -2138757584 is
// outside the bounds of the buffer" in the depthwise filter gradient's scratch).
import { describe, expect, it } from 'vitest';
import { alignUp16 } from '../../../src/ml/backends/wasm-training/simd.js';

describe('heap address arithmetic', () => {
  it('aligns addresses above 2^31 without going negative', () => {
    expect(alignUp16(2 ** 31 + 5)).toBe(2 ** 31 + 16);
    expect(alignUp16(2 ** 32 - 32)).toBe(2 ** 32 - 32);
    expect(alignUp16(3_000_000_001)).toBe(3_000_000_016);
    expect(alignUp16(0)).toBe(0);
    expect(alignUp16(17)).toBe(32);
  });
});
