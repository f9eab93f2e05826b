import { describe, expect, it } from 'vitest';
import { loadDataset, type Split } from '../../src/data/index.js';
import { NORMALIZATION } from '../../src/data/normalization.js';
import { classStyle, drawSampleLook, renderSynthetic, sampleRng, SYNTHETIC_NOISE } from '../../src/data/synthetic.js';

const opts = { dataRoot: '/nonexistent', inputSize: 32 };
const noAug = { augment: false, seed: 0, epoch: 0, step: 0 };
const all = (s: Split) =>
  s.batch(
    Array.from({ length: s.length }, (_, i) => i),
    noAug,
  );

/** Nearest-class-mean accuracy on val, with class means from train, over features f(image). */
function nearestMeanAccuracy(
  train: { x: Float32Array; y: Int32Array; n: number },
  val: { x: Float32Array; y: Int32Array; n: number },
  classes: number,
  f: (img: Float32Array) => Float64Array,
): number {
  const D = train.x.length / train.n;
  const feats = (b: typeof train) => Array.from({ length: b.n }, (_, i) => f(b.x.subarray(i * D, (i + 1) * D)));
  const ft = feats(train);
  const dim = ft[0].length;
  const means = Array.from({ length: classes }, () => new Float64Array(dim));
  const counts = new Array(classes).fill(0);
  ft.forEach((v, i) => {
    for (let k = 0; k < dim; k++) means[train.y[i]][k] += v[k];
    counts[train.y[i]]++;
  });
  means.forEach((m, c) => m.forEach((_, k) => (m[k] /= counts[c])));
  let correct = 0;
  feats(val).forEach((v, i) => {
    let best = -1;
    let bestD = Infinity;
    means.forEach((m, c) => {
      let d = 0;
      for (let k = 0; k < dim; k++) d += (v[k] - m[k]) ** 2;
      if (d < bestD) [bestD, best] = [d, c];
    });
    if (best === val.y[i]) correct++;
  });
  return correct / val.n;
}

/** Mean colour plus the share of gradient energy along 4 orientations: what a first conv layer sees. */
function colourAndOrientation(size: number) {
  return (img: Float32Array) => {
    const f = new Float64Array(7);
    const grey = (y: number, x: number) => {
      let s = 0;
      for (let c = 0; c < 3; c++) s += img[(y * size + x) * 3 + c] * NORMALIZATION.std[c];
      return s;
    };
    for (let p = 0; p < size * size; p++) for (let c = 0; c < 3; c++) f[c] += img[p * 3 + c] / (size * size);
    for (let y = 1; y < size - 1; y++) {
      for (let x = 1; x < size - 1; x++) {
        f[3] += Math.abs(grey(y, x + 1) - grey(y, x - 1));
        f[4] += Math.abs(grey(y + 1, x) - grey(y - 1, x));
        f[5] += Math.abs(grey(y + 1, x + 1) - grey(y - 1, x - 1));
        f[6] += Math.abs(grey(y + 1, x - 1) - grey(y - 1, x + 1));
      }
    }
    const e = f[3] + f[4] + f[5] + f[6];
    for (let k = 3; k < 7; k++) f[k] = (4 * f[k]) / e;
    return f;
  };
}

describe('synthetic dataset', () => {
  it('has the configured sizes, class-major labels and pattern names', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 5, samplesPerClass: 7, valPerClass: 3, seed: 1 }, opts);
    expect(ds.classes).toEqual(['pattern-0', 'pattern-1', 'pattern-2', 'pattern-3', 'pattern-4']);
    expect(ds.train.length).toBe(35);
    expect(ds.val.length).toBe(15);
    expect(Array.from(ds.train.labels.slice(0, 8))).toEqual([0, 0, 0, 0, 0, 0, 0, 1]);
    const b = await ds.train.batch([0, 34], noAug);
    expect(b.x.length).toBe(2 * 32 * 32 * 3);
    expect(Array.from(b.y)).toEqual([0, 4]);
  });

  it('is a pure function of the seed', async () => {
    const cfg = { type: 'synthetic' as const, classes: 4, samplesPerClass: 8, valPerClass: 4, seed: 7 };
    const a = await all((await loadDataset(cfg, opts)).train);
    const b = await all((await loadDataset(cfg, opts)).train);
    const c = await all((await loadDataset({ ...cfg, seed: 8 }, opts)).train);
    expect(b.x).toEqual(a.x);
    expect(c.x).not.toEqual(a.x);
    // train and validation samples are different images
    expect(renderSynthetic(7, 0, 0, 0, 32)).not.toEqual(renderSynthetic(7, 1, 0, 0, 32));
  });

  it('gives each class a distinct (hue, orientation, frequency) for the first classes', () => {
    const styles = Array.from({ length: 24 }, (_, c) => classStyle(c));
    const keys = new Set(styles.map((s) => `${s.hue.toFixed(3)}/${s.theta.toFixed(3)}/${s.cycles}`));
    expect(keys.size).toBe(24);
    expect(styles[0].hue).toBe(styles[1].hue); // pairs share a hue ...
    expect(Math.abs(styles[0].theta - styles[1].theta)).toBeCloseTo(Math.PI / 2, 9); // ... and differ by 90 degrees
  });

  it('is learnable but not trivial: raw-pixel templates get only colour, colour + orientation get nearly all', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 4, samplesPerClass: 64, valPerClass: 32, seed: 1 }, opts);
    const [train, val] = [await all(ds.train), await all(ds.val)];
    // Random phase averages the stripes out of a class-mean template: only the hue (shared by
    // class pairs) is left, so raw nearest-mean sits near 50% with 4 classes (chance 25%).
    const raw = nearestMeanAccuracy(train, val, 4, (img) => Float64Array.from(img));
    expect(raw).toBeGreaterThan(0.35);
    expect(raw).toBeLessThan(0.7);
    // Orientation energy (3x3 differences) separates the pairs.
    const feat = nearestMeanAccuracy(train, val, 4, colourAndOrientation(32));
    expect(feat).toBeGreaterThan(0.88);
  });

  it('draws fresh noise for every row and every sample (no row repeats another)', () => {
    const size = 64;
    // Noise alone: the bare pattern subtracted, on a mid-grey background where nothing clamps.
    const noiseOf = (k: number) => {
      const bare = renderSynthetic(9, 0, 0, k, size, 0);
      const noisy = renderSynthetic(9, 0, 0, k, size);
      return Float64Array.from(noisy, (v, i) => v - bare[i]);
    };
    const corr = (a: Float64Array, b: Float64Array) => {
      let [ab, aa, bb] = [0, 0, 0];
      for (let i = 0; i < a.length; i++) [ab, aa, bb] = [ab + a[i] * b[i], aa + a[i] ** 2, bb + b[i] ** 2];
      return ab / Math.sqrt(aa * bb);
    };
    const [n0, n1] = [noiseOf(0), noiseOf(1)];
    const row = (n: Float64Array, y: number) => n.subarray(y * size * 3, (y + 1) * size * 3);
    let worst = 0;
    for (let y = 0; y + 1 < size; y++) worst = Math.max(worst, Math.abs(corr(row(n0, y), row(n0, y + 1))), Math.abs(corr(row(n0, y), row(n1, y))));
    // 192 values per row: independent rows correlate by about 1/sqrt(192) = 0.07; a repeated slice by 1.
    expect(worst).toBeLessThan(0.35);
    expect(Math.abs(corr(n0, n1))).toBeLessThan(0.05);
  });

  it('draws the pattern of its sample look exactly (rotated stripes), plus noise of the stated spread', () => {
    const size = 224;
    for (const [c, k] of [
      [0, 0],
      [3, 5],
      [6, 11],
    ]) {
      const look = drawSampleLook(sampleRng(4, 0, c, k), c);
      const bare = renderSynthetic(4, 0, c, k, size, 0);
      const noisy = renderSynthetic(4, 0, c, k, size);
      let worst = 0;
      let n = 0;
      let s2 = 0;
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          // the pattern written out directly, one Math.sin per pixel
          const [u, v] = [(x + 0.5) / size - look.cx, (y + 0.5) / size - look.cy];
          const mask = Math.min(1, Math.max(0, (look.radius - Math.hypot(u, v)) / (1.5 / size) + 0.5));
          const g = 0.5 + 0.5 * look.contrast * Math.sin(2 * Math.PI * look.cycles * (u * Math.cos(look.theta) + v * Math.sin(look.theta)) + look.phase);
          for (let ch = 0; ch < 3; ch++) {
            const stripe = look.dark[ch] + (look.light[ch] - look.dark[ch]) * g;
            const want = (look.background + (stripe - look.background) * mask) * 255;
            const i = (y * size + x) * 3 + ch;
            worst = Math.max(worst, Math.abs(bare[i] - want));
            if (bare[i] > 60 && bare[i] < 195) [n, s2] = [n + 1, s2 + (noisy[i] - bare[i]) ** 2]; // unclamped
          }
        }
      }
      expect(worst).toBeLessThanOrEqual(0.5 + 1e-6); // rounding only
      expect(Math.sqrt(s2 / n) / 255).toBeCloseTo(SYNTHETIC_NOISE, 2);
    }
  });
});
