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

/**
 * Render sample `k` of class `c` in `split` at `size` x `size` RGB uint8 (`noise`: the pixel
 * noise's standard deviation, 0 for the bare pattern). A job's first epoch renders every image on
 * the cores that train, so this is kept cheap: the stripe's (sin, cos) is rotated by a fixed angle
 * per pixel along a row instead of computed, the disc's edge takes a square root only in the
 * columns near it, the noise is a slice of a fixed table per row (one draw per row instead of one
 * per value), and the clamped view rounds and clamps on store. Per 224 px image (a throwaway loop
 * over renderSynthetic): Math.sin and Box-Muller per pixel 12.1 ms, an Irwin-Hall draw per value
 * 1.7 ms (Xeon, AVX-512); on a Xeon family 6 model 167 that was 1.17 ms, of which 0.74 the
 * draws, and is 0.48 ms now.
 */
export function renderSynthetic(seed: number, split: number, c: number, k: number, size: number, noise = SYNTHETIC_NOISE): Uint8Array {
  const rng = sampleRng(seed, split, c, k);
  const { theta, cycles, phase, cx, cy, radius, contrast, background: bg, light, dark } = drawSampleLook(rng, c);
  const background = bg * 255;
  const [d0, d1, d2] = dark.map((v) => v * 255);
  const [s0, s1, s2] = light.map((v, ch) => (v - dark[ch]) * 255);
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const edge = 1.5 / size; // soft disc edge, about 1.5 px wide
  const w = 2 * Math.PI * cycles; // stripe phase per unit of distance across the stripes
  const stepSin = Math.sin((w * cos) / size);
  const stepCos = Math.cos((w * cos) / size);

  const out = new Uint8Array(size * size * 3);
  const px = new Uint8ClampedArray(out.buffer);
  // A row is a slice of the table: 3 x 1024 values at the largest input loadDataset allows.
  if (size * 3 > NOISE_TABLE_LEN) throw new RangeError(`renderSynthetic: size ${size} exceeds the noise table`);
  const table = standardNoise();
  const scale = noise * 255;
  let p = 0;
  const u0 = 0.5 / size - cx; // the first column's u
  for (let y = 0; y < size; y++) {
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
  return out;
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
 * Lazily rendered samples of one split, kept once rendered while within the byte budget (they are
 * cheap to redo, so the budget only trades memory for time).
 */
export function syntheticGetter(seed: number, split: number, perClass: number, size: number, budget: { bytesLeft: number }): (i: number) => SourceImage {
  const cache: (Uint8Array | undefined)[] = [];
  return (i) => {
    let data = cache[i];
    if (!data) {
      data = renderSynthetic(seed, split, Math.floor(i / perClass), i % perClass, size);
      if (budget.bytesLeft >= data.length) {
        cache[i] = data;
        budget.bytesLeft -= data.length;
      }
    }
    return { data, side: size, channels: 3 };
  };
}
