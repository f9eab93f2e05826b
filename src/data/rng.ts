// Seedable randomness for everything that must replay exactly on resume.
//
// The rule: random decisions are pure functions of *where* they happen (seed, epoch, step, sample),
// never of how many numbers some shared generator has handed out before. A resumed run then gets
// the same data order and the same augmentation as an uninterrupted one without saving any
// generator state. `hashSeed` turns such coordinates into a 32-bit seed; `Rng` (sfc32) draws from it.

const TWO_POW_32 = 4294967296;
/** 1 / the standard deviation of the sum of four uniform bytes: 1 / sqrt(4 * (256^2 - 1) / 12). */
const NOISE_SCALE = 1 / Math.sqrt((4 * (256 * 256 - 1)) / 12);

/** murmur3's 32-bit finalizer: a bijection on uint32 with full avalanche. */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Hash any number of integers (negative or up to 2^53 in magnitude) into one uint32 seed.
 * Order matters: hashSeed(1, 2) !== hashSeed(2, 1). Non-integers are rejected because a
 * fractional coordinate is almost always a bug (an epoch computed as a float, say).
 */
export function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9 ^ parts.length;
  for (const p of parts) {
    if (!Number.isSafeInteger(p)) throw new RangeError(`hashSeed: ${p} is not a safe integer`);
    const lo = p >>> 0; // two's-complement low word (also right for negatives)
    const hi = Math.floor(p / TWO_POW_32) >>> 0;
    h = mix32((h ^ lo) + 0x9e3779b9);
    h = mix32((h ^ hi) + 0x7f4a7c15);
  }
  return h;
}

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator): 128-bit state, passes PractRand,
 * a few integer ops per draw. Seeded through splitmix-style mixing so nearby seeds diverge at once.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    const s = hashSeed(seed);
    this.a = mix32(s ^ 0x243f6a88);
    this.b = mix32(s ^ 0x85a308d3);
    this.c = mix32(s ^ 0x13198a2e);
    this.d = 1; // the counter
    for (let i = 0; i < 12; i++) this.uint32(); // discard the weakly mixed start
  }

  /** Next uint32. */
  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  float(): number {
    return this.uint32() / TWO_POW_32;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling). n must be in [1, 2^32]. */
  int(n: number): number {
    if (!(n >= 1 && n <= TWO_POW_32) || !Number.isInteger(n)) throw new RangeError(`Rng.int: bad n ${n}`);
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    let x = this.uint32();
    while (x >= limit) x = this.uint32();
    return x % n;
  }

  /**
   * Near-normal noise from one draw: the sum of its four bytes, standardised (Irwin-Hall, n = 4).
   * Mean 0 and variance 1 exactly, bounded at +-3.45: for bulk pixel noise, where the far tails do
   * not matter. Fills `out` times `scale` in one loop over local state rather than a method call
   * per value; the stream moves on exactly as `out.length` uint32() draws would.
   */
  fillNoise(out: Float32Array, scale: number): void {
    let { a, b, c, d } = this;
    const k = scale * NOISE_SCALE;
    for (let i = 0; i < out.length; i++) {
      // uint32()'s sfc32 step, on locals
      const t = (((a + b) | 0) + d) | 0;
      d = (d + 1) | 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) | 0;
      c = (c << 21) | (c >>> 11);
      c = (c + t) | 0;
      out[i] = ((t & 255) + ((t >>> 8) & 255) + ((t >>> 16) & 255) + (t >>> 24) - 510) * k;
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
  }

  /** True with probability p. */
  bernoulli(p: number): boolean {
    return this.float() < p;
  }

  /** The generator's state, for checkpointing a stream that is not position-derived. */
  getState(): [number, number, number, number] {
    return [this.a >>> 0, this.b >>> 0, this.c >>> 0, this.d >>> 0];
  }

  setState(state: readonly number[]): void {
    if (state.length !== 4) throw new RangeError('Rng state has 4 words');
    [this.a, this.b, this.c, this.d] = state.map((v) => v | 0) as [number, number, number, number];
  }

  /** A generator seeded by the hash of coordinates: `Rng.at(seed, epoch, step)`. */
  static at(...parts: number[]): Rng {
    return new Rng(hashSeed(...parts));
  }
}

/** In-place Fisher-Yates shuffle driven by `rng`. */
export function shuffleInPlace<T extends { length: number; [i: number]: unknown }>(arr: T, rng: Rng): T {
  for (let i = arr.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = arr[i];
    arr[i] = arr[j];
    arr[j] = t;
  }
  return arr;
}
