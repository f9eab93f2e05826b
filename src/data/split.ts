// A split is a list of labelled images that can be rendered into batches. Sources (synthetic,
// fashion-mnist, imagefolder) only say how to fetch image i as uint8; everything after that
// (augmentation, resize, normalization, batching) is shared here.
import { NO_AUGMENTATION, drawAugmentation, renderSample, type Augmentation, type SourceImage } from './augment.js';
import { packSourceRows, type SourceRows } from './source-rows.js';
import type { DeferredSynthetic } from './synthetic.js';
import { Rng } from './rng.js';
import type { SplitSource } from './split-source.js';

export interface BatchAugment {
  /** Apply training augmentation (random crop + flip). False for evaluation. */
  augment: boolean;
  /** Training seed; with epoch, step and the position in the batch it fixes every random choice. */
  seed: number;
  epoch: number;
  /** Step the batch belongs to (epochBatches passes the step within the epoch). */
  step: number;
}

export interface Batch {
  /** NHWC float32, normalized with NORMALIZATION: n x inputSize x inputSize x 3. */
  x: Float32Array;
  /** Label of each row of x. */
  y: Int32Array;
  n: number;
}

/** A batch before its pixel pass: each row's stored image and augmentation (source-rows.ts). */
export interface SourceBatch {
  rows: SourceRows;
  y: Int32Array;
  n: number;
}

export interface Split {
  readonly length: number;
  /** Label of each sample (index into Dataset.classes). */
  readonly labels: Int32Array;
  /**
   * Render the samples `indices` (in that order) into one batch. With `out` (at least
   * n x inputSize^2 x 3 floats) the pixels are written there and `x` is a view of its start,
   * so a caller can recycle batch buffers instead of allocating one per step.
   */
  batch(indices: ArrayLike<number>, aug: BatchAugment, out?: Float32Array): Promise<Batch>;
  /** The same batch before rendering: `batch` is `sources` then renderSample of every row. */
  sources(indices: ArrayLike<number>, aug: BatchAugment, out?: Uint8Array): Promise<SourceBatch>;
  /** Plain-data description another thread can rebuild this split from (see split-source.ts). */
  readonly source?: SplitSource;
}

/** The rows `rows` of `split`, in that order, as a split of their own (no source: not for threads). */
export function rowsOf(split: Split, rows: readonly number[]): Split {
  const pick = (indices: ArrayLike<number>) => Array.from(indices, (i) => rows[i]);
  return {
    length: rows.length,
    labels: Int32Array.from(rows, (r) => split.labels[r]),
    batch: (indices, aug, out) => split.batch(pick(indices), aug, out),
    sources: (indices, aug, out) => split.sources(pick(indices), aug, out),
  };
}

/** Fetch sample i as a stored image (sync for in-memory sources, async for decoders). */
export type ImageGetter = (i: number) => SourceImage | Promise<SourceImage>;

/** Sample i as a recipe for the thread that trains on it to render, or null to fetch it (synthetic.ts). */
export type ImageDeferrer = (i: number) => DeferredSynthetic | null;

/**
 * The augmentation of the sample at position `i` of batch (seed, epoch, step): a pure function of
 * those numbers, so a resumed run draws exactly what the uninterrupted run drew.
 */
export function augmentationFor(aug: BatchAugment, i: number, inputSize: number, opts: { flip?: boolean } = {}) {
  return aug.augment ? drawAugmentation(Rng.at(aug.seed, aug.epoch, aug.step, i), inputSize, opts) : NO_AUGMENTATION;
}

export class ImageSplit implements Split {
  readonly length: number;

  constructor(
    readonly labels: Int32Array,
    private readonly inputSize: number,
    private readonly getImage: ImageGetter,
    /** Whether training augmentation may mirror images (false when a mirror image changes the class). */
    private readonly flip = true,
    readonly source?: SplitSource,
    /** Used by `sources` only: `batch` renders every pixel itself. */
    private readonly defer?: ImageDeferrer,
  ) {
    this.length = labels.length;
  }

  async batch(indices: ArrayLike<number>, aug: BatchAugment, out?: Float32Array): Promise<Batch> {
    const { images, augs, y } = await this.fetch(indices, aug, (i) => this.getImage(i));
    const n = images.length;
    const s = this.inputSize;
    const per = s * s * 3;
    if (out && out.length < n * per) throw new RangeError(`batch buffer holds ${out.length} floats, need ${n * per}`);
    const x = out ? out.subarray(0, n * per) : new Float32Array(n * per);
    for (let k = 0; k < n; k++) renderSample(images[k], s, augs[k], x, k * per);
    return { x, y, n };
  }

  async sources(indices: ArrayLike<number>, aug: BatchAugment, out?: Uint8Array): Promise<SourceBatch> {
    const { images, augs, y } = await this.fetch(indices, aug, (i) => this.defer?.(i) ?? this.getImage(i));
    return { rows: packSourceRows(images, augs, out), y, n: images.length };
  }

  /** Each row's image (as `get` gives it), augmentation draw and label. */
  private async fetch<T>(
    indices: ArrayLike<number>,
    aug: BatchAugment,
    get: (i: number) => T | Promise<T>,
  ): Promise<{ images: T[]; augs: Augmentation[]; y: Int32Array }> {
    const idx = Array.from(indices);
    for (const i of idx) {
      if (!Number.isInteger(i) || i < 0 || i >= this.length) {
        throw new RangeError(`sample index ${i} out of range [0, ${this.length})`);
      }
    }
    const images = await Promise.all(idx.map(async (i) => get(i)));
    const augs = idx.map((_, k) => augmentationFor(aug, k, this.inputSize, { flip: this.flip }));
    return { images, augs, y: Int32Array.from(idx, (i) => this.labels[i]) };
  }
}
