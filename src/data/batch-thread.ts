// Training batches, rendered in a worker thread while the current step trains.
//
// The training step is synchronous (wasm kernels), so work left on its thread — the JS resize and
// augmentation of every sample, Fashion-MNIST's first-epoch sharp resize calls, synthetic
// rendering, imagefolder decode bookkeeping — ran between steps and added to each one. Here a
// batch thread renders batch k+1 while step k trains, into a ring of two transferable buffers.
// Order and augmentation are the same pure functions of (seed, epoch, step) that epochBatches
// uses, so the batches equal the synchronous pipeline's (test/data/batch-thread.test.ts).
//
//   const batches = openTrainBatches(ds, { batchSize, seed, augment, shuffle: true, dropLast }, { onWarning });
//   for await (const b of batches.epoch(epochIndex, startStepInEpoch)) { ...b.x is valid until the next batch }
//   await batches.close();
import { startThread } from '../start-thread.js';
import { epochBatches, type EpochBatch } from './batching.js';
import type { DataWarning } from './errors.js';
import type { Dataset } from './index.js';
import {
  deserializeError,
  type FromBatchThread,
  type ThreadInput,
  type ToBatchThread,
} from './batch-thread-protocol.js';

export interface TrainBatchOptions {
  batchSize: number;
  seed: number;
  augment: boolean;
  shuffle: boolean;
  dropLast: boolean;
}

export interface TrainBatches {
  /**
   * The batches of epoch `epoch` from `startStepInEpoch` on. A batch's `x` and `y` are valid until
   * the next batch is asked for (or the loop ends): then its buffer goes back to be refilled.
   */
  epoch(epoch: number, startStepInEpoch: number): AsyncIterable<EpochBatch>;
  /** Ends the batch thread, if any. */
  close(): Promise<void>;
  /** 'thread' or 'inline': where the batches are rendered (logged by the trainer). */
  readonly where: 'thread' | 'inline';
}

/** The batch thread ended other than through close(): a job fails with this, it does not hang. */
export class BatchThreadError extends Error {
  readonly code = 'DATA_THREAD_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'BatchThreadError';
  }
}

/** Buffers in the ring: the batch being trained on and the one rendered ahead. */
export const RING_SLOTS = 2;

/**
 * Batches from a thread when the split can be rebuilt there (every built-in source), else inline.
 * `thread: false` keeps everything on the calling thread (the synchronous pipeline).
 */
export function openTrainBatches(
  ds: Dataset,
  o: TrainBatchOptions,
  opts: { thread?: boolean; onWarning?: (w: DataWarning) => void } = {},
): TrainBatches {
  if (opts.thread === false || !ds.train.source) return inlineTrainBatches(ds, o);
  return threadedTrainBatches(ds, o, opts.onWarning ?? (() => {}));
}

export function inlineTrainBatches(ds: Dataset, o: TrainBatchOptions): TrainBatches {
  return {
    where: 'inline',
    epoch: (epoch, start) => epochBatches(ds.train, { ...o, epoch, startStepInEpoch: start }),
    close: async () => {},
  };
}

type Waiter = { resolve: (r: IteratorResult<EpochBatch>) => void; reject: (e: Error) => void };

export function threadedTrainBatches(ds: Dataset, o: TrainBatchOptions, onWarning: (w: DataWarning) => void): TrainBatches {
  const source = ds.train.source;
  if (!source) throw new TypeError('threadedTrainBatches: this split has no plain-data source');
  const input: ThreadInput = { ...o, source, budget: ds.budget.shared, slots: RING_SLOTS };
  const worker = startThread(import.meta.url, 'batch-thread-worker', input);
  const send = (m: ToBatchThread, transfer: ArrayBuffer[] = []) => worker.postMessage(m, transfer);
  const release = (x: ArrayBuffer) => {
    if (!failure && !closed) send({ type: 'release', x }, [x]);
  };
  const per = source.inputSize ** 2 * 3;

  let gen = 0;
  let closed = false;
  let failure: Error | null = null;
  // The epoch being consumed: batches that arrived before they were asked for, and the waiter.
  let queue: FromBatchThread[] = [];
  let waiter: Waiter | null = null;

  const settle = () => {
    if (!waiter) return;
    const w = waiter;
    if (failure) {
      waiter = null;
      w.reject(failure);
      return;
    }
    const m = queue.shift();
    if (!m) return;
    waiter = null;
    if (m.type === 'batch') {
      w.resolve({ done: false, value: { x: new Float32Array(m.x, 0, m.n * per), y: m.y, n: m.n, stepInEpoch: m.step } });
    } else if (m.type === 'error') {
      w.reject(deserializeError(m.error));
    } else {
      w.resolve({ done: true, value: undefined });
    }
  };
  const fail = (err: Error) => {
    if (failure || closed) return;
    failure = err;
    settle();
  };

  worker.on('message', (m: FromBatchThread) => {
    if (m.type === 'warning') {
      ds.stats.skipped += m.skipped;
      onWarning(m.warning);
    } else if (m.type === 'batch' || m.type === 'done' || m.type === 'error') {
      if (m.gen !== gen) {
        if (m.type === 'batch') release(m.x); // an abandoned epoch's batch: straight back to the ring
        return;
      }
      queue.push(m);
      settle();
    }
  });
  worker.on('error', (err) => fail(new BatchThreadError(`the data loading thread failed: ${err.message}`)));
  worker.on('exit', (code) => fail(new BatchThreadError(`the data loading thread exited unexpectedly (code ${code})`)));

  const epoch = (epochIndex: number, start: number): AsyncIterable<EpochBatch> => ({
    [Symbol.asyncIterator](): AsyncIterator<EpochBatch> {
      // Starting an epoch abandons any other: its late batches come back as stale and are released.
      const mine = ++gen;
      for (const m of queue) if (m.type === 'batch') release(m.x);
      queue = [];
      if (!failure && !closed) send({ type: 'epoch', gen: mine, epoch: epochIndex, start });
      let held: ArrayBuffer | null = null; // the batch the consumer is working on
      let finished = false;
      const letGo = () => {
        if (held) release(held);
        held = null;
      };
      const end = () => {
        finished = true;
        letGo();
        if (gen === mine) {
          for (const m of queue) if (m.type === 'batch') release(m.x);
          queue = [];
          if (!failure && !closed) send({ type: 'stop', gen: mine });
        }
      };
      return {
        async next(): Promise<IteratorResult<EpochBatch>> {
          letGo(); // the previous batch has been trained on: refill its buffer
          if (finished || gen !== mine) return { done: true, value: undefined };
          if (closed) throw new BatchThreadError('the training batches were closed');
          try {
            const r = await new Promise<IteratorResult<EpochBatch>>((resolve, reject) => {
              waiter = { resolve, reject };
              settle();
            });
            if (r.done) finished = true;
            else held = r.value.x.buffer as ArrayBuffer;
            return r;
          } catch (err) {
            end();
            throw err;
          }
        },
        async return(): Promise<IteratorResult<EpochBatch>> {
          end();
          return { done: true, value: undefined };
        },
      };
    },
  });

  return {
    where: 'thread',
    epoch,
    async close() {
      if (closed) return;
      closed = true;
      if (waiter) {
        const w = waiter;
        waiter = null;
        w.reject(new BatchThreadError('the training batches were closed'));
      }
      await worker.terminate();
    },
  };
}
