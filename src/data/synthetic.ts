// The `synthetic` data set: every class is an oriented colour grating in a soft disc on a grey,
// noisy background. A class is fixed by (hue group, orientation, stripe frequency); each sample
// draws its own phase, position, radius, contrast, small orientation/frequency/hue jitter and
// pixel noise. Classes 2g and 2g+1 share a hue and differ in orientation by 90 degrees, so colour
// alone gets only part of the way: a model has to see orientation, which a 3x3 conv does easily.
// Everything is a pure function of (seed, split, class, sample index).
import type { SourceImage } from './augment.js';
import { Rng } from './rng.js';

const STREAM = 0x5e7;
const DEG = Math.PI / 180;
/** Stripe cycles across the image for successive hue groups. */
const CYCLES = [3, 5, 7.5] as const;

export interface ClassStyle {
  hue: number; // [0, 1)
  theta: number; // radians
  cycles: number; // stripe periods across the image side
}

/** The fixed look of class c. Classes beyond ~24 start to resemble each other more closely. */
export function classStyle(c: number): ClassStyle {
  const g = Math.floor(c / 2);
  const hue = (g * 0.618034 + 0.02) % 1; // golden-ratio steps spread hues evenly
  const orientationIndex = (2 * (c % 2) + (g % 2)) % 4; // pair members 90 degrees apart
  return { hue, theta: orientationIndex * 45 * DEG, cycles: CYCLES[Math.floor(g / 2) % CYCLES.length] };
}

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  h = ((h % 1) + 1) % 1;
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  switch (i % 6) {
    case 0:
      return [v, t, p];
    case 1:
      return [q, v, p];
    case 2:
      return [p, v, t];
    case 3:
      return [p, q, v];
    case 4:
      return [t, p, v];
    default:
      return [v, p, q];
  }
}

/** Split tags keep train and validation samples apart (different streams, never equal). */
export const SPLIT_TAG = { train: 0, val: 1 } as const;

/** The random stream of sample `k` of class `c` in `split`: its look first, then its pixel noise. */
export function sampleRng(seed: number, split: number, c: number, k: number): Rng {
  return Rng.at(STREAM, seed, split, c, k);
}

/** One sample's draw of its class's look; positions and sizes are in fractions of the image side. */
export interface SampleLook {
  theta: number;
  cycles: number;
  phase: number;
  cx: number;
  cy: number;
  radius: number;
  contrast: number;
  /** Grey level of the background, [0, 1]. */
  background: number;
  /** The stripes' RGB extremes, [0, 1]. */
  light: [number, number, number];
  dark: [number, number, number];
}

/** The look of one sample of class c: its class's style jittered, drawn from `rng` in a fixed order. */
export function drawSampleLook(rng: Rng, c: number): SampleLook {
  const style = classStyle(c);
  const theta = style.theta + rng.uniform(-8, 8) * DEG;
  const cycles = style.cycles * rng.uniform(0.9, 1.1);
  const phase = rng.uniform(0, 2 * Math.PI);
  const cx = 0.5 + rng.uniform(-0.15, 0.15);
  const cy = 0.5 + rng.uniform(-0.15, 0.15);
  const radius = rng.uniform(0.3, 0.42);
  const hue = style.hue + rng.uniform(-0.04, 0.04);
  const contrast = rng.uniform(0.55, 1);
  const background = rng.uniform(0.3, 0.7);
  return { theta, cycles, phase, cx, cy, radius, contrast, background, light: hsvToRgb(hue, 0.8, 0.95), dark: hsvToRgb(hue, 0.55, 0.3) };
}

/** Pixel noise's standard deviation, as a share of the full scale. */
export const SYNTHETIC_NOISE = 0.07;

/**
 * Standard near-normal noise (Irwin-Hall, n = 4; Rng.fillNoise): one fixed table per thread, made
 * on first use. Each image row reads a slice of it at an offset drawn from the sample's stream (one
 * draw per row instead of one per value); the offset's range depends only on the image size, so a
 * sample renders the same whatever was rendered before it.
 */
const NOISE_TABLE_LEN = 1 << 17;
let noiseTable: Float32Array | null = null;
function standardNoise(): Float32Array {
  if (!noiseTable) {
    noiseTable = new Float32Array(NOISE_TABLE_LEN);
    new Rng(STREAM).fillNoise(noiseTable, 1);
  }
  return noiseTable;
}

/** What fixes a synthetic image: sample `k` of class `c` of split `split` (SPLIT_TAG), data set seed `seed`. */
export interface SyntheticRecipe {
  seed: number;
  split: number;
  c: number;
  k: number;
}

/**
 * Render sample `k` of class `c` in `split` at `size` x `size` RGB uint8 (`noise`: the pixel
 * noise's standard deviation, 0 for the bare pattern). See SyntheticRows for how it is kept cheap.
 */
export function renderSynthetic(seed: number, split: number, c: number, k: number, size: number, noise = SYNTHETIC_NOISE): Uint8Array {
  const out = new Uint8Array(size * size * 3);
  new SyntheticRows({ seed, split, c, k }, size, out, noise).render(size);
  return out;
}

/**
 * renderSynthetic a few rows at a time, into `out` (size x size x 3 bytes), so a training thread
 * can render a source image in the short waits of a step (source-rows.ts). The sample's random
 * stream is drawn row by row in order, so the pieces make exactly renderSynthetic's image.
 *
 * A job's first epoch renders every image on the cores that train, so this is kept cheap: the
 * stripe's (sin, cos) is rotated by a fixed angle per pixel along a row instead of computed, the
 * disc's edge takes a square root only in the columns near it, the noise is a slice of a fixed
 * table per row (one draw per row instead of one per value), and the clamped view rounds and
 * clamps on store. Per 224 px image (a throwaway loop over renderSynthetic): Math.sin and
 * Box-Muller per pixel 12.1 ms, an Irwin-Hall draw per value 1.7 ms (Xeon, AVX-512); on a Xeon
 * family 6 model 167 that was 1.17 ms, of which 0.74 the draws, and is 0.48 ms now.
 */
export class SyntheticRows {
  private readonly rng: Rng;
  private readonly look: SampleLook;
  private readonly px: Uint8ClampedArray;
  private y = 0;

  constructor(
    recipe: SyntheticRecipe,
    private readonly size: number,
    out: Uint8Array,
    private readonly noise = SYNTHETIC_NOISE,
  ) {
    // A row is a slice of the table: 3 x 1024 values at the largest input loadDataset allows.
    if (size * 3 > NOISE_TABLE_LEN) throw new RangeError(`renderSynthetic: size ${size} exceeds the noise table`);
    if (out.length < size * size * 3) throw new RangeError(`synthetic image buffer holds ${out.length} bytes, need ${size * size * 3}`);
    this.rng = sampleRng(recipe.seed, recipe.split, recipe.c, recipe.k);
    this.look = drawSampleLook(this.rng, recipe.c);
    this.px = new Uint8ClampedArray(out.buffer, out.byteOffset, size * size * 3);
  }

  /** Renders the next `rows` rows; true while rows remain. */
  render(rows: number): boolean {
    const { size, rng, px } = this;
    const { theta, cycles, phase, cx, cy, radius, contrast, background: bg, light, dark } = this.look;
    const background = bg * 255;
    const [d0, d1, d2] = dark.map((v) => v * 255);
    const [s0, s1, s2] = light.map((v, ch) => (v - dark[ch]) * 255);
    const cos = Math.cos(theta);
    const sin = Math.sin(theta);
    const edge = 1.5 / size; // soft disc edge, about 1.5 px wide
    const w = 2 * Math.PI * cycles; // stripe phase per unit of distance across the stripes
    const stepSin = Math.sin((w * cos) / size);
    const stepCos = Math.cos((w * cos) / size);
    const table = standardNoise();
    const scale = this.noise * 255;
    const u0 = 0.5 / size - cx; // the first column's u
    const y1 = Math.min(size, this.y + rows);
    let p = this.y * size * 3;
    for (let y = this.y; y < y1; y++) {
      const n0 = rng.int(NOISE_TABLE_LEN - size * 3 + 1);
      const v = (y + 0.5) / size - cy;
      const rowStart = w * (u0 * cos + v * sin) + phase;
      let sn = Math.sin(rowStart);
      let cs = Math.cos(rowStart);
      // Columns certainly outside the soft edge (mask 0) and certainly inside it (mask 1), a pixel
      // of margin each way; only the columns between take the square root.
      const [out0, out1] = columnsWithin(radius + edge + 1 / size, v, cx, size, false);
      const [in0, in1] = columnsWithin(radius - edge - 1 / size, v, cx, size, true);
      for (let x = 0; x < size; x++) {
        const u = (x + 0.5) / size - cx;
        const mask = x < out0 || x >= out1 ? 0 : x >= in0 && x < in1 ? 1 : Math.min(1, Math.max(0, (radius - Math.sqrt(u * u + v * v)) / edge + 0.5));
        const g = 0.5 + 0.5 * contrast * sn;
        px[p] = background + (d0 + s0 * g - background) * mask + table[n0 + 3 * x] * scale;
        px[p + 1] = background + (d1 + s1 * g - background) * mask + table[n0 + 3 * x + 1] * scale;
        px[p + 2] = background + (d2 + s2 * g - background) * mask + table[n0 + 3 * x + 2] * scale;
        p += 3;
        const next = sn * stepCos + cs * stepSin;
        cs = cs * stepCos - sn * stepSin;
        sn = next;
      }
    }
    this.y = y1;
    return y1 < size;
  }
}

/**
 * The columns [x0, x1) whose pixel centres are within `r` of (cx, v) along the row (u = (x + 0.5) /
 * size - cx), rounded outward (`inner` false: a superset) or inward (`inner` true: a subset).
 */
function columnsWithin(r: number, v: number, cx: number, size: number, inner: boolean): [number, number] {
  if (r <= Math.abs(v)) return [0, 0];
  const half = Math.sqrt(r * r - v * v);
  const lo = (cx - half) * size - 0.5;
  const hi = (cx + half) * size - 0.5;
  const x0 = inner ? Math.ceil(lo) : Math.floor(lo);
  const x1 = (inner ? Math.floor(hi) : Math.ceil(hi)) + 1;
  return [Math.max(0, Math.min(size, x0)), Math.max(0, Math.min(size, x1))];
}

/**
 * A synthetic image handed out before its pixels exist, for the thread that trains on it to render
 * (source-rows.ts): into `store` (shared memory, kept for later epochs) unless `flags[index]` says
 * another thread already did, or, without a store, into the batch's own bytes.
 */
export interface DeferredSynthetic {
  side: number;
  recipe: SyntheticRecipe;
  store?: SharedImage;
}

/** An image's bytes in shared memory; `flags[index]` turns 1 once they are rendered. */
export interface SharedImage {
  data: Uint8Array;
  flags: Int32Array;
  index: number;
}

/** Renders `recipe` into its store unless some thread has; safe to race (the bytes are the same). */
function fillSharedImage(store: SharedImage, recipe: SyntheticRecipe, size: number): void {
  if (Atomics.load(store.flags, store.index) === 1) return;
  new SyntheticRows(recipe, size, store.data).render(size);
  Atomics.store(store.flags, store.index, 1);
}

/**
 * The `count` samples of one split (`perClass` per class, class by class), each rendered once and
 * kept in shared memory while within the byte budget (they are cheap to redo, so the budget only
 * trades memory for time). `get` renders an image where it is asked for; `defer` hands out one not
 * rendered yet as a recipe (null once rendered), so the training threads render it in their step's
 * waits instead of the batch thread competing with them for the cores, and the copy they render
 * into the store serves every later epoch.
 */
export function syntheticImages(
  seed: number,
  split: number,
  perClass: number,
  count: number,
  size: number,
  budget: { bytesLeft: number },
): { get: (i: number) => SourceImage; defer: (i: number) => DeferredSynthetic | null } {
  const bytes = size * size * 3;
  const stores: (Uint8Array | undefined)[] = [];
  const flags = new Int32Array(new SharedArrayBuffer(4 * count));
  const recipe = (i: number): SyntheticRecipe => ({ seed, split, c: Math.floor(i / perClass), k: i % perClass });
  const store = (i: number): SharedImage | undefined => {
    let data = stores[i];
    if (!data && budget.bytesLeft >= bytes) {
      data = new Uint8Array(new SharedArrayBuffer(bytes));
      stores[i] = data;
      budget.bytesLeft -= bytes;
    }
    return data && { data, flags, index: i };
  };
  return {
    get(i) {
      const s = store(i);
      const r = recipe(i);
      if (!s) return { data: renderSynthetic(r.seed, r.split, r.c, r.k, size), side: size, channels: 3 };
      fillSharedImage(s, r, size);
      return { data: s.data, side: size, channels: 3 };
    },
    defer(i) {
      const s = store(i);
      if (s && Atomics.load(flags, i) === 1) return null;
      return { side: size, recipe: recipe(i), ...(s ? { store: s } : {}) };
    },
  };
}
