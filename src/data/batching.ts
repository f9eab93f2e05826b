// Epoch order and the prefetching batch iterator. Order and augmentation are functions of
// (seed, epoch, step), so resuming at step k of an epoch yields exactly the batches k, k+1, ...
// that the uninterrupted run produced.
import { Rng, hashSeed, shuffleInPlace } from './rng.js';
import type { Batch, Split } from './split.js';

/** Salt that keeps the order stream apart from other streams seeded by the same (seed, epoch). */
const ORDER_STREAM = 0x0de7;

/** A permutation of 0..n-1 for this (seed, epoch): Fisher-Yates seeded by hash(seed, epoch). */
export function epochOrder(seed: number, epoch: number, n: number): Int32Array {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`epochOrder: bad n ${n}`);
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return shuffleInPlace(order, new Rng(hashSeed(ORDER_STREAM, seed, epoch)));
}

/** Batches in one epoch: drop_last floors (training), otherwise the partial batch is kept (eval). */
export function stepsPerEpoch(n: number, batchSize: number, dropLast: boolean): number {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`bad batch size ${batchSize}`);
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

export interface EpochBatchOptions {
  batchSize: number;
  seed: number;
  epoch: number;
  shuffle: boolean;
  augment: boolean;
  dropLast: boolean;
  /** First step to produce (resume); earlier batches are skipped without being rendered. */
  startStepInEpoch?: number;
  /** Batches rendered ahead of the consumer (default 2). 0 renders on demand. */
  prefetch?: number;
}

export interface EpochBatch extends Batch {
  /** 0-based index of this batch within the epoch. */
  stepInEpoch: number;
}

/**
 * The batches of one epoch, `prefetch` of them in flight ahead of the consumer so image decoding
 * (sharp's thread pool) overlaps the training step. Breaking out of the loop stops prefetching.
 * Augmentation of batch k is seeded by (seed, epoch, k, position in batch).
 */
export function epochBatches(split: Split, o: EpochBatchOptions): AsyncIterable<EpochBatch> {
  const steps = stepsPerEpoch(split.length, o.batchSize, o.dropLast);
  const start = o.startStepInEpoch ?? 0;
  const prefetch = o.prefetch ?? 2;
  if (!Number.isInteger(start) || start < 0) throw new RangeError(`bad startStepInEpoch ${start}`);
  if (!Number.isInteger(prefetch) || prefetch < 0) throw new RangeError(`bad prefetch ${prefetch}`);

  return {
    [Symbol.asyncIterator](): AsyncIterator<EpochBatch> {
      const order = o.shuffle ? epochOrder(o.seed, o.epoch, split.length) : null;
      const pending: Promise<EpochBatch>[] = [];
      let next = start; // next step to request
      let closed = false;

      const request = (step: number): Promise<EpochBatch> => {
        const lo = step * o.batchSize;
        const hi = Math.min(lo + o.batchSize, split.length);
        const indices = new Int32Array(hi - lo);
        for (let k = lo; k < hi; k++) indices[k - lo] = order ? order[k] : k;
        const p = split
          .batch(indices, { augment: o.augment, seed: o.seed, epoch: o.epoch, step })
          .then((b) => ({ ...b, stepInEpoch: step }));
        p.catch(() => {}); // surfaced when awaited; avoids an unhandled rejection if abandoned
        return p;
      };
      const fill = () => {
        while (!closed && next < steps && pending.length < prefetch + 1) pending.push(request(next++));
      };

      return {
        async next(): Promise<IteratorResult<EpochBatch>> {
          if (closed) return { done: true, value: undefined };
          // In flight while the consumer works on batch k: k+1 .. k+prefetch. Asking for k+1 tops
          // the window up first, so decoding never idles while we wait.
          fill();
          const head = pending.shift();
          if (!head) {
            closed = true;
            return { done: true, value: undefined };
          }
          let value: EpochBatch;
          try {
            value = await head;
          } catch (err) {
            closed = true;
            pending.length = 0;
            throw err;
          }
          return { done: false, value };
        },
        async return(): Promise<IteratorResult<EpochBatch>> {
          closed = true;
          pending.length = 0;
          return { done: true, value: undefined };
        },
      };
    },
  };
}
