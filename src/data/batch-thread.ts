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
//
// openTrainSources delivers the same batches before their pixel pass (each row's stored image and
// augmentation, source-rows.ts), two ahead: a split step's training threads render their own rows
// in the previous step's barrier waits, and the batch thread keeps only decoding and copies.
import { startThread } from '../start-thread.js';
import {
  epochBatches,
  epochSources,
  type EpochBatch,
  type EpochBatchOptions,
  type EpochIterable,
  type EpochIterator,
  type EpochSourceBatch,
} from './batching.js';
import type { Split } from './split.js';
import type { DataWarning } from './errors.js';
import type { Dataset } from './index.js';
import { deserializeError, type FromBatchThread, type ThreadInput, type ToBatchThread } from './batch-thread-protocol.js';

export interface TrainBatchOptions {
  batchSize: number;
  seed: number;
  augment: boolean;
  shuffle: boolean;
  dropLast: boolean;
}

export interface TrainBatches<B = EpochBatch> {
  /**
   * The batches of epoch `epoch` from `startStepInEpoch` on. A batch's buffers are valid until
   * the next batch is asked for (or the loop ends): then they go back to be refilled. A peeked
   * batch stays valid until then too.
   */
  epoch(epoch: number, startStepInEpoch: number): EpochIterable<B>;
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
/** Source rows: the batch trained on, the next one (its rows rendered during this step) and one being filled. */
export const SOURCE_RING_SLOTS = 3;

type BatchSourceOptions = { thread?: boolean; onWarning?: (w: DataWarning) => void };

/**
 * Batches from a thread when the split can be rebuilt there (every built-in source), else inline.
 * `thread: false` keeps everything on the calling thread (the synchronous pipeline).
 */
export function openTrainBatches(ds: Dataset, o: TrainBatchOptions, opts: BatchSourceOptions = {}): TrainBatches<EpochBatch> {
  return openBatches(ds, o, opts, epochBatches, 'pixels');
}

/** openTrainBatches' batches as source rows (Split.sources), for training threads that render their own rows. */
export function openTrainSources(ds: Dataset, o: TrainBatchOptions, opts: BatchSourceOptions = {}): TrainBatches<EpochSourceBatch> {
  return openBatches(ds, o, opts, epochSources, 'sources');
}

/** The batch thread delivering `deliver`, or `epochs` on the calling thread. */
function openBatches<B extends EpochBatch | EpochSourceBatch>(
  ds: Dataset,
  o: TrainBatchOptions,
  opts: BatchSourceOptions,
  epochs: (split: Split, o: EpochBatchOptions) => EpochIterable<B>,
  deliver: ThreadInput['deliver'],
): TrainBatches<B> {
  if (opts.thread === false || !ds.train.source) return inlineTrainBatches(ds, o, epochs);
  return threadedTrainBatches(ds, o, opts.onWarning ?? (() => {}), deliver);
}

function inlineTrainBatches<B>(ds: Dataset, o: TrainBatchOptions, epochs: (split: Split, o: EpochBatchOptions) => EpochIterable<B>): TrainBatches<B> {
  return {
    where: 'inline',
    epoch: (epoch, start) => epochs(ds.train, { ...o, epoch, startStepInEpoch: start }),
    close: async () => {},
  };
}

type BatchMessage = Extract<FromBatchThread, { type: 'batch' }>;

/** A batch message as the consumer sees it. */
function decodeBatch(m: BatchMessage, per: number): EpochBatch | EpochSourceBatch {
  const head = { y: m.y, n: m.n, stepInEpoch: m.step };
  if (!m.rows) return { ...head, x: new Float32Array(m.buffer, 0, m.n * per) };
  return { ...head, rows: { bytes: new Uint8Array(m.buffer), images: m.rows.images, augs: m.rows.augs } };
}

/** Arrived, not yet consumed: a message of the epoch being consumed, and its batch once decoded (peek). */
type Entry = { m: FromBatchThread; value?: EpochBatch | EpochSourceBatch };
type Waiter<B> = { resolve: (r: IteratorResult<B>) => void; reject: (e: Error) => void };

function threadedTrainBatches<B extends EpochBatch | EpochSourceBatch>(
  ds: Dataset,
  o: TrainBatchOptions,
  onWarning: (w: DataWarning) => void,
  deliver: ThreadInput['deliver'],
): TrainBatches<B> {
  const source = ds.train.source;
  if (!source) throw new TypeError('threadedTrainBatches: this split has no plain-data source');
  const input: ThreadInput = { ...o, source, budget: ds.budget.shared, deliver, slots: deliver === 'sources' ? SOURCE_RING_SLOTS : RING_SLOTS };
  const worker = startThread(import.meta.url, 'batch-thread-worker', input);
  const send = (m: ToBatchThread, transfer: ArrayBuffer[] = []) => worker.postMessage(m, transfer);
  const release = (buffer: ArrayBuffer) => {
    if (!failure && !closed) send({ type: 'release', buffer }, [buffer]);
  };
  const releaseQueued = () => {
    for (const { m } of queue) if (m.type === 'batch') release(m.buffer);
    queue = [];
  };
  const per = source.inputSize ** 2 * 3;
  const valueOf = (e: Entry) => (e.value ??= decodeBatch(e.m as BatchMessage, per)) as B;

  let gen = 0;
  let closed = false;
  let failure: Error | null = null;
  // The epoch being consumed: what arrived before it was asked for, and the waiter.
  let queue: Entry[] = [];
  let waiter: Waiter<B> | null = null;

  const settle = () => {
    if (!waiter) return;
    const w = waiter;
    if (failure) {
      waiter = null;
      w.reject(failure);
      return;
    }
    const e = queue.shift();
    if (!e) return;
    waiter = null;
    if (e.m.type === 'batch') w.resolve({ done: false, value: valueOf(e) });
    else if (e.m.type === 'error') w.reject(deserializeError(e.m.error));
    else w.resolve({ done: true, value: undefined });
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
        if (m.type === 'batch') release(m.buffer); // an abandoned epoch's batch: straight back to the ring
        return;
      }
      queue.push({ m });
      settle();
    }
  });
  worker.on('error', (err) => fail(new BatchThreadError(`the data loading thread failed: ${err.message}`)));
  worker.on('exit', (code) => fail(new BatchThreadError(`the data loading thread exited unexpectedly (code ${code})`)));

  const epoch = (epochIndex: number, start: number): EpochIterable<B> => ({
    [Symbol.asyncIterator](): EpochIterator<B> {
      // Starting an epoch abandons any other: its late batches come back as stale and are released.
      const mine = ++gen;
      releaseQueued();
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
          releaseQueued();
          if (!failure && !closed) send({ type: 'stop', gen: mine });
        }
      };
      return {
        async next(): Promise<IteratorResult<B>> {
          letGo(); // the previous batch has been trained on: refill its buffer
          if (finished || gen !== mine) return { done: true, value: undefined };
          if (closed) throw new BatchThreadError('the training batches were closed');
          try {
            const r = await new Promise<IteratorResult<B>>((resolve, reject) => {
              waiter = { resolve, reject };
              settle();
            });
            if (r.done) finished = true;
            else held = bufferOf(r.value);
            return r;
          } catch (err) {
            end();
            throw err;
          }
        },
        async return(): Promise<IteratorResult<B>> {
          end();
          return { done: true, value: undefined };
        },
        peek(): B | null {
          const e = queue[0];
          return !finished && gen === mine && e?.m.type === 'batch' ? valueOf(e) : null;
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

/** The transferred buffer a batch's pixels or source bytes live in. */
function bufferOf(b: EpochBatch | EpochSourceBatch): ArrayBuffer {
  return ('x' in b ? b.x.buffer : b.rows.bytes.buffer) as ArrayBuffer;
}
