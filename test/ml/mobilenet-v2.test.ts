import { describe, expect, it } from 'vitest';
import { allConvs, buildArch, makeDivisible } from '../../src/ml/mobilenet-v2.js';

/** Trainable parameters: conv weights + BN gamma/beta, dense weight + bias (no conv biases). */
function paramCount(a: ReturnType<typeof buildArch>): number {
  let n = 0;
  for (const c of allConvs(a)) n += c.k * c.k * (c.kind === 'conv' ? c.inC : 1) * c.outC + 2 * c.outC;
  return n + a.dense.inF * a.dense.outF + a.dense.outF;
}

function finalSide(a: ReturnType<typeof buildArch>): number {
  let s = a.inputSize;
  for (const c of allConvs(a)) s = Math.floor((s + 2 * ((c.k - 1) / 2) - c.k) / c.stride) + 1;
  return s;
}

describe('MobileNetV2 architecture', () => {
  it('rounds channels like the reference (multiples of 8, never 10% below)', () => {
    expect(makeDivisible(32 * 0.35)).toBe(16); // 11.2 -> 8 is < 0.9 * 11.2, so 16
    expect(makeDivisible(16 * 0.35)).toBe(8);
    expect(makeDivisible(24 * 0.35)).toBe(8);
    expect(makeDivisible(96 * 0.35)).toBe(32); // 33.6 -> 32
    expect(makeDivisible(320 * 0.35)).toBe(112);
    expect(makeDivisible(1280 * 1.4)).toBe(1792);
  });

  it('has torchvision mobilenet_v2 size at width 1.0, 224px, 1000 classes', () => {
    const a = buildArch({ inputSize: 224, numClasses: 1000, widthMultiplier: 1, smallInputStem: 'auto', dropout: 0.2 });
    // torchvision.models.mobilenet_v2(): 3,504,872 parameters.
    expect(paramCount(a)).toBe(3_504_872);
    expect(a.blocks).toHaveLength(17);
    expect(a.stem).toMatchObject({ outC: 32, stride: 2 });
    expect(a.head.outC).toBe(1280);
    expect(a.blocks.map((b) => b.project.outC)).toEqual([16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]);
    expect(a.blocks.map((b) => b.dw.stride)).toEqual([1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]);
    expect(a.blocks.filter((b) => b.residual)).toHaveLength(10);
    expect(a.blocks[0].expand).toBeUndefined(); // t = 1
    expect(a.blocks[1].expand!.outC).toBe(96); // 16 * 6
    expect(finalSide(a)).toBe(7);
  });

  it('adapts the stem and the first stride-2 stage for inputs below 64', () => {
    const small = buildArch({ inputSize: 32, numClasses: 10, widthMultiplier: 0.35, smallInputStem: 'auto', dropout: 0.2 });
    expect(small.smallInputStem).toBe(true);
    expect(small.stem.stride).toBe(1);
    expect(small.blocks[1].dw.stride).toBe(1); // the c=24 stage's first block
    expect(small.blocks[3].dw.stride).toBe(2); // later stages keep stride 2
    expect(finalSide(small)).toBe(4); // overall stride 8 instead of 32
    expect(small.head.outC).toBe(1280); // not scaled below width 1
    expect(small.stem.outC).toBe(16);
    const off = buildArch({ inputSize: 32, numClasses: 10, widthMultiplier: 0.35, smallInputStem: 'off', dropout: 0.2 });
    expect(finalSide(off)).toBe(1);
    const big = buildArch({ inputSize: 96, numClasses: 10, widthMultiplier: 0.35, smallInputStem: 'auto', dropout: 0.2 });
    expect(big.smallInputStem).toBe(false);
    const forced = buildArch({ inputSize: 96, numClasses: 10, widthMultiplier: 0.35, smallInputStem: 'on', dropout: 0.2 });
    expect(forced.stem.stride).toBe(1);
  });
});
