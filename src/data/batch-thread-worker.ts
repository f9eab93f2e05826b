// The batch thread: rebuilds the training split from its plain-data source and renders the
// batches of the epoch the training thread asks for (decode, resize, augmentation,
// normalization), one ahead, into a ring of buffers that travel back and forth without copies.
// With `deliver: 'sources'` it stops before the pixel pass: each row's stored image (copied out
// of the cache, or a synthetic image's recipe until a training thread has rendered it) and
// augmentation draw (Split.sources), two ahead.
// The order and augmentation are the synchronous pipeline's own functions (stratifiedEpochOrder,
// batchIndices, ImageSplit.batch), so the batches are the same. Protocol: batch-thread.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { batchIndices, stepsPerEpoch, stratifiedEpochOrder } from './batching.js';
import { SharedByteBudget } from './byte-cache.js';
import type { DataWarning } from './errors.js';
import type { FolderStats } from './image-folder.js';
import { splitFromSource } from './split-source.js';
import type { FromBatchThread, ThreadInput, ToBatchThread } from './batch-thread-protocol.js';
import { serializeError } from './batch-thread-protocol.js';
import { maxImageBytes } from './source-rows.js';

const port = parentPort!;
const input = workerData as ThreadInput;
const post = (m: FromBatchThread, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

const stats: FolderStats = { skipped: 0 };
let reportedSkipped = 0;
const warn = (warning: DataWarning) => {
  post({ type: 'warning', warning, skipped: stats.skipped - reportedSkipped });
  reportedSkipped = stats.skipped;
};
const split = splitFromSource(input.source, new SharedByteBudget(input.budget), warn, stats);
const steps = stepsPerEpoch(split.length, input.batchSize, input.dropLast);
const sources = input.deliver === 'sources';
const slotBytes = input.batchSize * (sources ? maxImageBytes(input.source.inputSize) : input.source.inputSize ** 2 * 3 * 4);

// The ring: `slots` buffers exist at most; the training thread holds the others.
const free: ArrayBuffer[] = [];
let made = 0;
let waiting: (() => void)[] = [];
async function takeSlot(): Promise<ArrayBuffer> {
  for (;;) {
    const slot = free.pop();
    if (slot) return slot;
    if (made < input.slots) {
      made++;
      return new ArrayBuffer(slotBytes);
    }
    await new Promise<void>((r) => waiting.push(r));
  }
}

/** The epoch being produced; a new request or a stop replaces it, and the old loop ends. */
let current = -1;

async function produce(gen: number, epoch: number, start: number): Promise<void> {
  const order = input.shuffle ? stratifiedEpochOrder(input.seed, epoch, split.labels) : null;
  for (let step = start; step < steps; step++) {
    const slot = await takeSlot();
    if (gen !== current) {
      free.push(slot);
      return;
    }
    let m: FromBatchThread;
    try {
      const indices = batchIndices(order, step, input.batchSize, split.length);
      const aug = { augment: input.augment, seed: input.seed, epoch, step };
      if (sources) {
        const b = await split.sources(indices, aug, new Uint8Array(slot));
        m = { type: 'batch', gen, step, n: b.n, buffer: slot, y: b.y, rows: { images: b.rows.images, augs: b.rows.augs } };
      } else {
        const b = await split.batch(indices, aug, new Float32Array(slot));
        m = { type: 'batch', gen, step, n: b.n, buffer: slot, y: b.y };
      }
    } catch (err) {
      free.push(slot);
      if (gen === current) post({ type: 'error', gen, error: serializeError(err) });
      return;
    }
    if (gen !== current) {
      free.push(slot);
      return;
    }
    post(m, [slot]);
  }
  post({ type: 'done', gen });
}

port.on('message', (m: ToBatchThread) => {
  if (m.type === 'epoch') {
    current = m.gen;
    void produce(m.gen, m.epoch, m.start);
  } else if (m.type === 'stop') {
    if (current === m.gen) current = -1;
  } else if (m.type === 'release') {
    if (m.buffer.byteLength === slotBytes) free.push(m.buffer);
  }
  // Any message may free a slot or end an epoch: let a waiting producer look again.
  const woken = waiting;
  waiting = [];
  for (const w of woken) w();
});
post({ type: 'ready', length: split.length });
