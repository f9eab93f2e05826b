import { describe, expect, it } from 'vitest';
import { PAD, drawAugmentation, renderSample, type Augmentation, type SourceImage } from '../../src/data/augment.js';
import { CHUNK_ROWS, RowsRenderer, packSourceRows, sliceSourceRows } from '../../src/data/source-rows.js';
import { NORMALIZE_LUT } from '../../src/data/normalization.js';
import { NORMALIZATION } from '../../src/data/normalization.js';
import { Rng } from '../../src/data/rng.js';

/** Undo normalization: float sample -> bytes (rounded), for readable assertions. */
function toBytes(x: Float32Array): number[] {
  return Array.from(x, (v, i) => {
    const c = i % 3;
    return Math.round((v * NORMALIZATION.std[c] + NORMALIZATION.mean[c]) * 255) || 0; // no -0
  });
}

/** A side x side RGB image whose pixel (y, x) is [10*y + x, 100 + x, 200 - y]. */
function ramp(side: number): SourceImage {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) data.set([10 * y + x, 100 + x, 200 - y], (y * side + x) * 3);
  }
  return { data, side, channels: 3 };
}

function render(src: SourceImage, size: number, aug: Augmentation): number[] {
  const out = new Float32Array(size * size * 3);
  renderSample(src, size, aug, out, 0);
  return toBytes(out);
}

const px = (img: number[], size: number, y: number, x: number) => img.slice((y * size + x) * 3, (y * size + x) * 3 + 3);

describe('normalization', () => {
  it('maps bytes with (v/255 - mean)/std per channel (the table renderSample reads)', () => {
    // Byte v of channel c is NORMALIZE_LUT[c * 256 + v].
    expect(NORMALIZE_LUT[0 * 256 + 0]).toBeCloseTo((0 - 0.485) / 0.229, 5); // -2.1179
    expect(NORMALIZE_LUT[1 * 256 + 255]).toBeCloseTo((1 - 0.456) / 0.224, 5); // 2.4286
    expect(NORMALIZE_LUT[2 * 256 + 128]).toBeCloseTo((128 / 255 - 0.406) / 0.225, 5);
  });
});

describe('renderSample', () => {
  it('without augmentation at the same size reproduces the image exactly', () => {
    const src = ramp(6);
    expect(render(src, 6, { kind: 'none' })).toEqual(Array.from(src.data));
  });

  it('expands grey to three equal channels', () => {
    const src: SourceImage = { data: Uint8Array.from([0, 50, 100, 255]), side: 2, channels: 1 };
    expect(render(src, 2, { kind: 'none' })).toEqual([0, 0, 0, 50, 50, 50, 100, 100, 100, 255, 255, 255]);
  });

  it('resizes bilinearly with half-pixel centres (2 -> 4, hand-computed)', () => {
    // Row [0, 100] sampled at source x = -0.25 (clamped), 0.25, 0.75, 1.25 (clamped): 0, 25, 75, 100.
    const src: SourceImage = { data: Uint8Array.from([0, 100, 200, 40]), side: 2, channels: 1 };
    const img = render(src, 4, { kind: 'none' }).filter((_, i) => i % 3 === 0);
    expect(img.slice(0, 4)).toEqual([0, 25, 75, 100]);
    // Column 0 is [0, 200] -> 0, 50, 150, 200; pixel (1,1) = 0.75*(0.75*0 + 0.25*100) + 0.25*(0.75*200 + 0.25*40) = 58.75
    expect([img[0], img[4], img[8], img[12]]).toEqual([0, 50, 150, 200]);
    expect(img[5]).toBe(59);
  });

  it('pad-crop shifts the image and fills with black', () => {
    const size = 8;
    const src = ramp(size);
    // dx = PAD + 2: output x shows source x + 2; the two right-most columns are padding.
    const img = render(src, size, { kind: 'padcrop', dx: PAD + 2, dy: PAD - 1, flip: false });
    expect(px(img, size, 0, 0)).toEqual([0, 0, 0]); // row 0 comes from source row -1: padding
    expect(px(img, size, 1, 0)).toEqual([2, 102, 200]); // source (0, 2)
    expect(px(img, size, 3, 5)).toEqual([27, 107, 198]); // source (2, 7)
    expect(px(img, size, 3, 6)).toEqual([0, 0, 0]);
    // centred crop is the identity
    expect(render(src, size, { kind: 'padcrop', dx: PAD, dy: PAD, flip: false })).toEqual(Array.from(src.data));
  });

  it('flip mirrors columns', () => {
    const size = 5;
    const src = ramp(size);
    const img = render(src, size, { kind: 'padcrop', dx: PAD, dy: PAD, flip: true });
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) expect(px(img, size, y, x)).toEqual(px(Array.from(src.data), size, y, size - 1 - x));
  });

  it('a full-image rrc box is the identity and a half box zooms in', () => {
    const size = 8;
    const src = ramp(size);
    expect(render(src, size, { kind: 'rrc', x0: 0, y0: 0, w: 1, h: 1, flip: false })).toEqual(Array.from(src.data));
    // right half x in [4, 8): output x samples source 4 + (x + 0.5)/2 - 0.5 -> x=1: 4.25, x=7: 7.25 -> clamped 7
    const img = render(src, size, { kind: 'rrc', x0: 0.5, y0: 0, w: 0.5, h: 1, flip: false });
    expect(px(img, size, 0, 1)).toEqual([4, 104, 200]); // 4.25 -> 4.25 rounds to 4
    expect(px(img, size, 0, 7)).toEqual([7, 107, 200]);
  });
});

/**
 * Bilinear resampling written out per output value (four source pixels, half-pixel centres,
 * clamped edges, padding black, rounded to a byte): what renderSample's row-blending must equal.
 */
function referenceBilinear(src: SourceImage, size: number, aug: Exclude<Augmentation, { kind: 'none' }>): number[] {
  const { data, side, channels } = src;
  const axis = (o: number, flip: boolean, start: number, extent: number, shift: number) => {
    const oo = (flip ? size - 1 - o : o) + shift;
    if (oo < 0 || oo >= size) return null;
    const s = start + (oo + 0.5) * (extent / size) - 0.5;
    if (s <= 0) return { i0: 0, i1: Math.min(1, side - 1), w: 0 };
    const f = Math.floor(s);
    if (f >= side - 1) return { i0: side - 1, i1: side - 1, w: 0 };
    return { i0: f, i1: f + 1, w: Math.fround(s - f) };
  };
  const out: number[] = [];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const ax = aug.kind === 'rrc' ? axis(x, aug.flip, aug.x0 * side, aug.w * side, 0) : axis(x, aug.flip, 0, side, aug.dx - PAD);
      const ay = aug.kind === 'rrc' ? axis(y, false, aug.y0 * side, aug.h * side, 0) : axis(y, false, 0, side, aug.dy - PAD);
      for (let ch = 0; ch < 3; ch++) {
        if (!ax || !ay) {
          out.push(0);
          continue;
        }
        const at = (yy: number, xx: number) => data[(yy * side + xx) * channels + (channels === 3 ? ch : 0)];
        const top = at(ay.i0, ax.i0) + (at(ay.i0, ax.i1) - at(ay.i0, ax.i0)) * ax.w;
        const bot = at(ay.i1, ax.i0) + (at(ay.i1, ax.i1) - at(ay.i1, ax.i0)) * ax.w;
        out.push((top + (bot - top) * ay.w + 0.5) | 0);
      }
    }
  }
  return out;
}

describe('renderSample against per-value bilinear blending', () => {
  it('gives the same bytes for random crops, zooms out and in, flips, grey sources and resized pad-crops', () => {
    const rng = new Rng(11);
    for (let t = 0; t < 60; t++) {
      const channels = t % 3 === 0 ? 1 : 3;
      const side = [7, 28, 40, 96][t % 4];
      const size = [6, 32, 64, 80][(t >> 2) % 4];
      const data = Uint8Array.from({ length: side * side * channels }, () => rng.int(256));
      const src: SourceImage = { data, side, channels };
      const aug: Exclude<Augmentation, { kind: 'none' }> =
        t % 5 === 0
          ? { kind: 'padcrop', dx: rng.int(2 * PAD + 1), dy: rng.int(2 * PAD + 1), flip: rng.float() < 0.5 }
          : { kind: 'rrc', ...boxOf(drawAugmentation(rng, 64)), flip: rng.float() < 0.5 };
      expect(render(src, size, aug), `case ${t}: ${JSON.stringify(aug)} ${side} -> ${size}`).toEqual(referenceBilinear(src, size, aug));
    }
  });
});

function boxOf(a: Augmentation): { x0: number; y0: number; w: number; h: number } {
  if (a.kind !== 'rrc') throw new Error('expected rrc');
  return { x0: a.x0, y0: a.y0, w: a.w, h: a.h };
}

describe('rendering in pieces (RowsRenderer: a training thread renders rows a chunk at a time)', () => {
  it('gives renderSample’s bytes for every row of a range, in chunks, from a sliced copy too', () => {
    const rng = new Rng(5);
    const size = 40; // chunks of 16, 16 and 8 rows
    const images: SourceImage[] = [];
    const augs: Augmentation[] = [];
    for (let t = 0; t < 9; t++) {
      const channels = t % 3 === 0 ? 1 : 3;
      const side = [28, 40, 96][t % 3];
      images.push({ data: Uint8Array.from({ length: side * side * channels }, () => rng.int(256)), side, channels });
      augs.push(t % 4 === 0 ? { kind: 'none' } : drawAugmentation(rng, t % 2 ? 224 : size));
    }
    const per = size * size * 3;
    const whole = new Float32Array(images.length * per);
    images.forEach((im, k) => renderSample(im, size, augs[k], whole, k * per));
    const rows = packSourceRows(images, augs);
    expect(augs.map((a) => a.kind)).toEqual(expect.arrayContaining(['none', 'rrc', 'padcrop']));

    // Rows 2..7 of the batch, from the whole buffer and from a copy of their own.
    for (const [src, start, end] of [
      [rows, 2, 7],
      [sliceSourceRows(rows, 2, 7), 0, 5],
    ] as const) {
      const r = new RowsRenderer(src, size, new Float32Array(5 * per).fill(NaN), start, end);
      let chunks = 0;
      while (r.renderChunk()) chunks++;
      expect(chunks + 1).toBe(5 * Math.ceil(size / CHUNK_ROWS));
      expect(r.done).toBe(true);
      expect(r.finish()).toEqual(whole.subarray(2 * per, 7 * per));
    }
  });
});

describe('drawAugmentation', () => {
  it('pad-crop below 64 px: offsets within the padding, flips about half the time', () => {
    let flips = 0;
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const a = drawAugmentation(new Rng(i), 32);
      if (a.kind !== 'padcrop') throw new Error('expected padcrop');
      expect(a.dx).toBeGreaterThanOrEqual(0);
      expect(a.dx).toBeLessThanOrEqual(2 * PAD);
      seen.add(a.dx);
      flips += a.flip ? 1 : 0;
    }
    expect(seen.size).toBe(2 * PAD + 1);
    expect(flips / 2000).toBeGreaterThan(0.45);
    expect(flips / 2000).toBeLessThan(0.55);
  });

  it('random-resized-crop at 64 px and up: boxes inside the image with area 0.35..1', () => {
    let minArea = 1;
    for (let i = 0; i < 2000; i++) {
      const a = drawAugmentation(new Rng(i), 64);
      if (a.kind !== 'rrc') throw new Error('expected rrc');
      expect(a.x0).toBeGreaterThanOrEqual(0);
      expect(a.y0).toBeGreaterThanOrEqual(0);
      expect(a.x0 + a.w).toBeLessThanOrEqual(1 + 1e-12);
      expect(a.y0 + a.h).toBeLessThanOrEqual(1 + 1e-12);
      const area = a.w * a.h;
      expect(area).toBeGreaterThanOrEqual(0.35 - 1e-9);
      expect(a.w / a.h).toBeGreaterThanOrEqual(3 / 4 - 1e-9);
      expect(a.w / a.h).toBeLessThanOrEqual(4 / 3 + 1e-9);
      minArea = Math.min(minArea, area);
    }
    expect(minArea).toBeLessThan(0.4); // the low end of the range is actually used
  });
});
