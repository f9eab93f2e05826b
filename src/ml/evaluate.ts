// Top-1 / top-5 on a split, in evaluation mode (running BN statistics, frozen activation ranges).
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { epochBatches, type Split } from '../data/index.js';
import type { MobileNetV2 } from './mobilenet-v2.js';

export interface TopK {
  top1: number;
  top5: number;
  count: number;
  /** The logits of the rows asked for (`keepRows`), in that order: keepRows.length x classes. */
  kept?: Float32Array;
}

/** `count` indices spread evenly over [0, length), so class-ordered splits are covered. */
export function spreadIndices(length: number, count: number): number[] {
  const m = Math.min(length, count);
  return Array.from({ length: m }, (_, i) => Math.floor((i * length) / m));
}

/** Counts of rows whose label is the argmax / among the k largest logits (ties count against). */
export function topKHits(logits: Float32Array, labels: Int32Array, classes: number, k: number): { top1: number; topk: number } {
  let top1 = 0;
  let topk = 0;
  for (let r = 0; r < labels.length; r++) {
    const row = logits.subarray(r * classes, (r + 1) * classes);
    const target = row[labels[r]];
    let above = 0;
    for (let c = 0; c < classes; c++) if (row[c] > target || (row[c] === target && c < labels[r])) above++;
    if (above === 0) top1++;
    if (above < k) topk++;
  }
  return { top1, topk };
}

/** Images per evaluation batch at 224 px (MobileNetV2 1.0 float forward: about 2 GB of wasm heap at peak). */
export const EVAL_IMAGES_AT_224 = 8;
const EVAL_MAX_BATCH = 64;

/**
 * Images per evaluation/verification batch for `inputSize`: sized by pixels, so a batch holds about
 * as many activations as 8 images at 224 px whatever the resolution (32 px: 64 images). Memory then
 * depends on this bound, never on the size of the validation split.
 */
export function evalBatchSize(inputSize: number): number {
  return Math.max(1, Math.min(EVAL_MAX_BATCH, Math.floor((EVAL_IMAGES_AT_224 * 224 * 224) / (inputSize * inputSize))));
}

/**
 * Evaluates `model` on `split` with `logits` (rowLogits in eval-forward.ts). Returns null when
 * `signal` aborts midway (the caller is stopping). Yields to the event loop between batches so
 * heartbeats keep running during a long eval.
 */
export async function evaluate(
  model: MobileNetV2,
  split: Split,
  opts: {
    /** Images per batch (default evalBatchSize(inputSize)). */
    batchSize?: number;
    seed: number;
    signal?: AbortSignal;
    /**
     * The logits of a batch's n rows: this thread's forward, the rows spread over several threads
     * (DataParallelStep.forwardRows), or another engine's (TrainOptions.int8Scorer).
     */
    logits: (x: Float32Array, n: number) => Float32Array | Promise<Float32Array>;
    /** Split rows (ascending) whose logits to return as `kept`: the export verifies against them. */
    keepRows?: number[];
    /** Images scored so far and in all, after each batch. */
    onBatch?: (done: number, total: number) => void;
  },
): Promise<TopK | null> {
  const classes = model.arch.numClasses;
  const k = Math.min(5, classes);
  let top1 = 0;
  let top5 = 0;
  let count = 0;
  const size = model.arch.inputSize;
  const batches = epochBatches(split, {
    batchSize: opts.batchSize ?? evalBatchSize(size),
    seed: opts.seed,
    epoch: 0,
    shuffle: false,
    augment: false,
    dropLast: false,
  });
  const keep = opts.keepRows ?? [];
  const kept = new Float32Array(keep.length * classes);
  let nextKept = 0;
  for await (const b of batches) {
    if (opts.signal?.aborted) return null;
    const logits = await opts.logits(b.x, b.n);
    for (; nextKept < keep.length && keep[nextKept] < count + b.n; nextKept++) {
      const r = keep[nextKept] - count;
      kept.set(logits.subarray(r * classes, (r + 1) * classes), nextKept * classes);
    }
    const hits = topKHits(logits, b.y, classes, k);
    top1 += hits.top1;
    top5 += hits.topk;
    count += b.n;
    opts.onBatch?.(count, split.length);
    await yieldToLoop();
  }
  if (nextKept < keep.length) throw new RangeError(`keepRows: row ${keep[nextKept]} is not in a split of ${count}`);
  return { top1: count ? top1 / count : 0, top5: count ? top5 / count : 0, count, ...(opts.keepRows ? { kept } : {}) };
}
