import { describe, expect, it } from 'vitest';
import { Rng, hashSeed, mix32, shuffleInPlace } from '../../src/data/rng.js';

describe('mix32', () => {
  it('is murmur3 fmix32 (reference values from the C implementation)', () => {
    // fmix32 from MurmurHash3.cpp: h ^= h >> 16; h *= 0x85ebca6b; h ^= h >> 13; h *= 0xc2b2ae35; h ^= h >> 16
    const ref = (h: bigint) => {
      const m = 0xffffffffn;
      h ^= h >> 16n;
      h = (h * 0x85ebca6bn) & m;
      h ^= h >> 13n;
      h = (h * 0xc2b2ae35n) & m;
      return Number(h ^ (h >> 16n));
    };
    for (const v of [0, 1, 2, 0xdeadbeef, 0xffffffff, 123456789]) expect(mix32(v)).toBe(ref(BigInt(v)));
    expect(mix32(0)).toBe(0);
  });
});

describe('hashSeed', () => {
  it('is deterministic, order-sensitive, and separates nearby coordinates', () => {
    expect(hashSeed(1, 2, 3)).toBe(hashSeed(1, 2, 3));
    expect(hashSeed(1, 2)).not.toBe(hashSeed(2, 1));
    expect(hashSeed(1)).not.toBe(hashSeed(1, 0));
    const seen = new Set<number>();
    for (let e = 0; e < 50; e++) for (let s = 0; s < 50; s++) seen.add(hashSeed(7, e, s));
    expect(seen.size).toBe(2500);
  });
  it('handles negative and large safe integers and rejects fractions', () => {
    expect(hashSeed(-1)).not.toBe(hashSeed(0xffffffff)); // same low word, different high word
    expect(hashSeed(2 ** 40)).not.toBe(hashSeed(0));
    expect(() => hashSeed(1.5)).toThrow(RangeError);
    expect(() => hashSeed(Number.NaN)).toThrow(RangeError);
  });
});

describe('Rng', () => {
  it('replays the same stream for the same seed and a different one otherwise', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 20 }, () => a.uint32());
    expect(Array.from({ length: 20 }, () => b.uint32())).toEqual(sa);
    expect(Array.from({ length: 20 }, () => c.uint32())).not.toEqual(sa);
  });

  it('draws uniform floats in [0,1) and unbiased ints (chi-square)', () => {
    const r = new Rng(1);
    let min = 1;
    let max = 0;
    let sum = 0;
    const n = 100_000;
    const bins = new Array(10).fill(0);
    for (let i = 0; i < n; i++) {
      const f = r.float();
      min = Math.min(min, f);
      max = Math.max(max, f);
      sum += f;
      bins[r.int(10)]++;
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    expect(sum / n).toBeCloseTo(0.5, 2);
    const chi2 = bins.reduce((acc, o) => acc + (o - n / 10) ** 2 / (n / 10), 0);
    expect(chi2).toBeLessThan(27.9); // 9 dof, p = 0.001
  });

  it('fills near-normal noise: mean 0, the asked standard deviation, bounded, from one uint32 per value', () => {
    const n = 60_000;
    const out = new Float32Array(n);
    const r = new Rng(3);
    r.fillNoise(out, 2);
    let s = 0;
    let s2 = 0;
    let s4 = 0;
    for (const v of out) [s, s2, s4] = [s + v, s2 + v * v, s4 + v ** 4];
    expect(s / n).toBeCloseTo(0, 1);
    expect(Math.sqrt(s2 / n)).toBeCloseTo(2, 1);
    // Irwin-Hall n = 4: kurtosis 3 - 1.2 / 4 (a normal's is 3; a uniform's 1.8)
    expect(s4 / n / (s2 / n) ** 2).toBeCloseTo(2.7, 1);
    expect(Math.max(...out.map(Math.abs))).toBeLessThanOrEqual(2 * 3.4642);
    // the stream moved on by exactly n draws, and the same seed replays it
    const twin = new Rng(3);
    for (let i = 0; i < n; i++) twin.uint32();
    expect(r.uint32()).toBe(twin.uint32());
    const again = new Float32Array(n);
    new Rng(3).fillNoise(again, 2);
    expect(again).toEqual(out);
  });

  it('restores its state exactly', () => {
    const r = new Rng(9);
    for (let i = 0; i < 5; i++) r.uint32();
    const state = r.getState();
    const next = Array.from({ length: 10 }, () => r.uint32());
    const r2 = new Rng(0);
    r2.setState(state);
    expect(Array.from({ length: 10 }, () => r2.uint32())).toEqual(next);
  });

  it('Rng.at(...) equals new Rng(hashSeed(...))', () => {
    expect(Rng.at(1, 2, 3).uint32()).toBe(new Rng(hashSeed(1, 2, 3)).uint32());
  });

  it('rejects bad int bounds', () => {
    expect(() => new Rng(1).int(0)).toThrow(RangeError);
    expect(() => new Rng(1).int(2.5)).toThrow(RangeError);
  });
});

describe('shuffleInPlace', () => {
  it('produces every permutation of 3 items about equally often', () => {
    const counts = new Map<string, number>();
    const r = new Rng(5);
    const n = 60_000;
    for (let i = 0; i < n; i++) {
      const key = shuffleInPlace([0, 1, 2], r).join('');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    expect(counts.size).toBe(6);
    for (const c of counts.values()) expect(Math.abs(c - n / 6)).toBeLessThan(400); // ~4.4 sigma
  });
});
