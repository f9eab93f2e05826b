// Top-1 / top-5 on a split, in evaluation mode (running BN statistics, frozen activation ranges).
import { tf } from './tf.js';
import { epochBatches, type Split } from '../data/index.js';
import type { ForwardMode, MobileNetV2 } from './mobilenet-v2.js';

export interface TopK {
  top1: number;
  top5: number;
  count: number;
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

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

/**
 * Evaluates `model` on `split`. Returns null when `signal` aborts midway (the caller is stopping).
 * Yields to the event loop between batches so heartbeats keep running during a long eval.
 */
export async function evaluate(
  model: MobileNetV2,
  split: Split,
  opts: {
    batchSize: number;
    seed: number;
    mode: ForwardMode;
    signal?: AbortSignal;
    /** Logits for a batch instead of `model.forward(x, mode)` (the int8 graph runner). */
    forward?: (x: tf.Tensor4D) => tf.Tensor2D;
  },
): Promise<TopK | null> {
  const forward = opts.forward ?? ((x: tf.Tensor4D) => model.forward(x, opts.mode));
  const classes = model.arch.numClasses;
  const k = Math.min(5, classes);
  let top1 = 0;
  let top5 = 0;
  let count = 0;
  const size = model.arch.inputSize;
  const batches = epochBatches(split, { batchSize: opts.batchSize, seed: opts.seed, epoch: 0, shuffle: false, augment: false, dropLast: false });
  for await (const b of batches) {
    if (opts.signal?.aborted) return null;
    const t = tf.tidy(() => forward(tf.tensor4d(b.x, [b.n, size, size, 3])));
    const logits = (await t.data()) as Float32Array;
    t.dispose();
    const hits = topKHits(logits, b.y, classes, k);
    top1 += hits.top1;
    top5 += hits.topk;
    count += b.n;
    await yieldToLoop();
  }
  return { top1: count ? top1 / count : 0, top5: count ? top5 / count : 0, count };
}
