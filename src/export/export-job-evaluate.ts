// Export step 3: what the shipped model is worth. The verification accuracies (float and int8 on
// the verification images), and `evaluation`: the int8 ONNX file itself on the whole validation
// split, streamed in bounded batches, with top-1, top-5, per-class top-1 and the confusion matrix.
// `qatserve eval` computes the same figures on an image folder with EvaluationAccumulator.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Split } from '../data/index.js';
import { evalBatchSize } from '../ml/evaluate.js';
import { summariseConfusion, type ModelEvaluation } from './evaluation.js';
import { argmaxRows, nhwcToNchw, top1Accuracy, type OnnxRunner } from './verify.js';
import type { VerificationLogits } from './export-job-verify.js';

/** Top-1 of the float model and of the shipped int8 file on the verification images. */
export function verificationAccuracy(v: VerificationLogits, ortLogits: Float32Array): { floatTop1: number; int8Top1: number } {
  return {
    int8Top1: top1Accuracy(argmaxRows(ortLogits, v.n, v.k), v.labels),
    floatTop1: top1Accuracy(argmaxRows(v.floatLogits, v.n, v.k), v.labels),
  };
}

/**
 * Running top-1 / top-5 / confusion counts over batches of logits. Ties count against the label
 * (as evaluate.ts's topKHits): a model that outputs constant logits is not credited.
 */
export class EvaluationAccumulator {
  private images = 0;
  private top1 = 0;
  private top5 = 0;
  /** confusion[true][predicted] */
  private readonly confusion: number[][];

  constructor(readonly classes: number) {
    this.confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  }

  add(logits: ArrayLike<number>, labels: ArrayLike<number>): void {
    const k = this.classes;
    const topK = Math.min(5, k);
    for (let r = 0; r < labels.length; r++) {
      const label = labels[r];
      if (!(label >= 0 && label < k)) throw new RangeError(`label ${label} is outside [0, ${k})`);
      const target = logits[r * k + label];
      let above = 0;
      let pred = 0;
      for (let c = 0; c < k; c++) {
        const v = logits[r * k + c];
        if (v > target || (v === target && c < label)) above++;
        if (v > logits[r * k + pred]) pred = c;
      }
      if (above === 0) this.top1++;
      if (above < topK) this.top5++;
      this.confusion[label][pred]++;
      this.images++;
    }
  }

  result(): ModelEvaluation {
    const n = this.images;
    return {
      images: n,
      top1: n ? this.top1 / n : 0,
      top5: n ? this.top5 / n : 0,
      ...summariseConfusion(this.confusion),
    };
  }
}

/**
 * The int8 ONNX model on every image of `split`, in batches sized by pixels: memory is one batch
 * whatever the split's size. Yields to the event loop between batches; `onBatch` hears the images
 * done after each.
 */
export async function evaluateOnnxOnSplit(
  runner: OnnxRunner,
  split: Split,
  classes: number,
  size: number,
  opts: { signal?: AbortSignal; onBatch?: (done: number, total: number) => void } = {},
): Promise<ModelEvaluation> {
  const acc = new EvaluationAccumulator(classes);
  const batch = evalBatchSize(size);
  for (let lo = 0; lo < split.length; lo += batch) {
    opts.signal?.throwIfAborted();
    const indices = Array.from({ length: Math.min(batch, split.length - lo) }, (_, i) => lo + i);
    const b = await split.batch(indices, { augment: false, seed: 0, epoch: 0, step: 0 });
    acc.add(await runner.run(nhwcToNchw(b.x, b.n, size), b.n, size), b.y);
    opts.onBatch?.(lo + b.n, split.length);
    await yieldToLoop();
  }
  return acc.result();
}

/** The same figures from logits already computed on every row of a split (labels in split order). */
export function evaluationOfLogits(logits: Float32Array, labels: Int32Array, classes: number): ModelEvaluation {
  const acc = new EvaluationAccumulator(classes);
  acc.add(logits, labels);
  return acc.result();
}

/** A trained model whose int8 top-1 cannot be told apart from guessing. */
export interface ChanceWarning {
  code: 'MODEL_AT_CHANCE';
  message: string;
}

/**
 * MODEL_AT_CHANCE when top-1 is below max(1.25 x chance, chance + 2 standard errors of a guesser
 * on this many images): within noise of guessing, or barely above it. A warning, not a failure: a
 * tiny smoke-test job is allowed to learn nothing, but its model must not serve silently.
 */
export function chanceWarning(e: Pick<ModelEvaluation, 'images' | 'top1'>, classes: number): ChanceWarning | null {
  if (e.images === 0 || classes < 2) return null;
  const chance = 1 / classes;
  const noise = 2 * Math.sqrt((chance * (1 - chance)) / e.images);
  const bar = Math.max(1.25 * chance, chance + noise);
  if (e.top1 >= bar) return null;
  return {
    code: 'MODEL_AT_CHANCE',
    message:
      `the int8 model's top-1 is ${(e.top1 * 100).toFixed(1)}% on ${e.images} validation images, ` +
      `near chance (${(chance * 100).toFixed(1)}% for ${classes} classes): it has not learned the task. ` +
      'Train longer (more epochs or data), or check the labels and the learning rate.',
  };
}
