import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { preprocessImage } from '../serving/preprocess-image.js';
import { FASHION_MNIST_CLASSES, loadDataset, NORMALIZATION } from '../../src/data/index.js';
import { balancedCounts, fashionMnistDir, parseClothesJson } from '../../src/data/fashion-mnist.js';

const noAug = { augment: false, seed: 0, epoch: 0, step: 0 };
const toByte = (v: number, c: number) => Math.round((v * NORMALIZATION.std[c] + NORMALIZATION.mean[c]) * 255) || 0;

/** Independent reference: JSON.parse the class file and drop the empty rows. */
function referenceImages(c: number): number[][] {
  const raw = JSON.parse(readFileSync(path.join(fashionMnistDir(), `${c}.json`), 'utf8')) as { data: number[][] };
  return raw.data.filter((r) => r.length > 0);
}

describe('parseClothesJson', () => {
  const row = (v: number) => Array(784).fill(v).join(',');
  const enc = (s: string) => new TextEncoder().encode(s);

  it('reads rows of 784 bytes and skips empty rows', () => {
    const { pixels, count } = parseClothesJson(enc(`{"data":[[${row(7)}],[],[${row(255)}]]}`));
    expect(count).toBe(2);
    expect(pixels.length).toBe(2 * 784);
    expect(pixels[0]).toBe(7);
    expect(pixels[784 + 783]).toBe(255);
  });

  it('rejects values above 255, fractions, negatives and short rows with DATASET_UNAVAILABLE', () => {
    for (const bad of [
      `{"data":[[256${',0'.repeat(783)}]]}`,
      `{"data":[[0.5${',0'.repeat(783)}]]}`,
      `{"data":[[-1${',0'.repeat(783)}]]}`,
      `{"data":[[1,2,3]]}`,
      `{"data":[[${row(1)}]]`,
    ]) {
      expect(() => parseClothesJson(enc(bad))).toThrow(expect.objectContaining({ code: 'DATASET_UNAVAILABLE' }));
    }
  });
});

describe('balancedCounts', () => {
  it('spreads the remainder over the first classes and caps at the split size', () => {
    expect(balancedCounts(15, 10, 6000)).toEqual([2, 2, 2, 2, 2, 1, 1, 1, 1, 1]);
    expect(balancedCounts(60000, 10, 6000)).toEqual(Array(10).fill(6000));
  });
});

describe('fashion-mnist dataset', () => {
  it('loads the full fixed split: 60,000 train / 10,000 test, 10 named classes', async () => {
    const t0 = performance.now();
    const ds = await loadDataset({ type: 'fashion-mnist', limit: 60000, testLimit: 10000 }, { dataRoot: '/none', inputSize: 28 });
    const ms = performance.now() - t0;
    expect(ds.classes).toEqual(['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']);
    expect(ds.classes).toEqual([...FASHION_MNIST_CLASSES]);
    expect(ds.train.length).toBe(60000);
    expect(ds.val.length).toBe(10000);
    const hist = new Array(10).fill(0);
    ds.train.labels.forEach((l) => hist[l]++);
    expect(hist).toEqual(Array(10).fill(6000));
    expect(ms).toBeLessThan(15_000); // about 1.5 s measured; generous for a loaded 2-core box
  });

  it('takes the first 6,000 images of a class for training and the last 1,000 for test (pixel-exact)', async () => {
    const ds = await loadDataset({ type: 'fashion-mnist', limit: 20, testLimit: 10 }, { dataRoot: '/none', inputSize: 28 });
    expect(ds.train.length).toBe(20);
    expect(Array.from(ds.train.labels)).toEqual([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]);
    expect(Array.from(ds.val.labels)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const ref0 = referenceImages(0);
    const ref9 = referenceImages(9);
    expect(ref0.length).toBe(7000);
    // train[0] = class 0 image 0; train[19] = class 9 image 1; val[0] = class 0 image 6000
    const b = await ds.train.batch([0, 19], noAug);
    const v = await ds.val.batch([0], noAug);
    const grey = (x: Float32Array, k: number, p: number) => toByte(x[k * 784 * 3 + p * 3], 0);
    expect(Array.from({ length: 784 }, (_, p) => grey(b.x, 0, p))).toEqual(ref0[0]);
    expect(Array.from({ length: 784 }, (_, p) => grey(b.x, 1, p))).toEqual(ref9[1]);
    expect(Array.from({ length: 784 }, (_, p) => grey(v.x, 0, p))).toEqual(ref0[6000]);
    // the first row of the first T-shirt, as stored in the package
    expect(ref0[0].slice(0, 12)).toEqual([0, 0, 0, 0, 0, 0, 0, 9, 8, 0, 0, 34]);
  });

  it('converts grey to three equal channels and resizes 28 -> 32', async () => {
    const ds = await loadDataset({ type: 'fashion-mnist', limit: 10, testLimit: 10 }, { dataRoot: '/none', inputSize: 32 });
    const b = await ds.train.batch([3], noAug);
    expect(b.x.length).toBe(32 * 32 * 3);
    let nonzero = 0;
    for (let p = 0; p < 32 * 32; p++) {
      const [r, g, bl] = [0, 1, 2].map((c) => toByte(b.x[p * 3 + c], c));
      expect(g).toBe(r);
      expect(bl).toBe(r);
      if (r > 0) nonzero++;
    }
    expect(nonzero).toBeGreaterThan(100); // it is a picture, not an empty frame
  });

  it('scores validation images exactly as /predict sees the same image posted as a PNG', async () => {
    const ds = await loadDataset({ type: 'fashion-mnist', limit: 10, testLimit: 20 }, { dataRoot: '/none', inputSize: 32 });
    // val is class-major, two per class: val[0] = class 0 image 6000, val[10] = class 5 image 6000, val[19] = class 9 image 6001
    for (const [k, c, n] of [
      [0, 0, 6000],
      [10, 5, 6000],
      [19, 9, 6001],
    ] as const) {
      const img = referenceImages(c)[n];
      const png = await sharp(Buffer.from(img), { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer();
      const served = await preprocessImage(png, { size: 32, normalization: NORMALIZATION, maxPixels: 1e6 });
      const { x } = await ds.val.batch([k], noAug);
      const plane = 32 * 32;
      let maxDiff = 0;
      for (let p = 0; p < plane; p++) {
        for (let ch = 0; ch < 3; ch++) maxDiff = Math.max(maxDiff, Math.abs(x[p * 3 + ch] - served[ch * plane + p]));
      }
      expect(maxDiff).toBeLessThan(1e-6);
    }
  });
});
