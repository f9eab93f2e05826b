// The batch thread must be invisible in results: the same batches as the synchronous pipeline
// (order, augmentation, pixels), the same warnings and the same errors, and no hang when the
// thread fails.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { epochBatches, epochSources, type EpochIterable, type EpochSourceBatch } from '../../src/data/batching.js';
import { BatchThreadError, openTrainBatches, openTrainSources, type TrainBatches } from '../../src/data/batch-thread.js';
import { RowsRenderer } from '../../src/data/source-rows.js';
import { DatasetError, loadDataset, type Dataset, type DataWarning } from '../../src/data/index.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'qatserve-batch-thread-'));
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

interface Seen {
  step: number;
  n: number;
  x: Float32Array;
  y: Int32Array;
}

/** Every batch of an iteration, copied (a threaded batch's buffer is refilled after the next one is asked for). */
async function drain(it: AsyncIterable<{ stepInEpoch: number; n: number; x: Float32Array; y: Int32Array }>, limit = Infinity): Promise<Seen[]> {
  const out: Seen[] = [];
  for await (const b of it) {
    out.push({ step: b.stepInEpoch, n: b.n, x: Float32Array.from(b.x), y: Int32Array.from(b.y) });
    if (out.length >= limit) break;
  }
  return out;
}

const opts = (batchSize: number, augment = true) => ({ batchSize, seed: 11, augment, shuffle: true, dropLast: true });

/** Synchronous and threaded batches of epochs 0 and 1 (the latter resumed at step 2) must match bit for bit. */
async function expectSameBatches(ds: Dataset, batchSize: number): Promise<void> {
  const o = opts(batchSize);
  const threaded = openTrainBatches(ds, o);
  expect(threaded.where).toBe('thread');
  try {
    for (const [epoch, start] of [
      [0, 0],
      [1, 2],
    ] as const) {
      const sync = await drain(epochBatches(ds.train, { ...o, epoch, startStepInEpoch: start }));
      const got = await drain(threaded.epoch(epoch, start));
      expect(got.length).toBe(sync.length);
      expect(got.length).toBeGreaterThan(1);
      for (let k = 0; k < sync.length; k++) {
        expect(got[k].step).toBe(sync[k].step);
        expect(got[k].y).toEqual(sync[k].y);
        expect(got[k].x).toEqual(sync[k].x);
      }
    }
  } finally {
    await threaded.close();
  }
}

describe('openTrainBatches in a thread', () => {
  it('yields the synchronous pipeline’s batches: synthetic, with augmentation', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 3, samplesPerClass: 6, valPerClass: 1, seed: 4 }, { dataRoot: tmp, inputSize: 24 });
    await expectSameBatches(ds, 4);
  });

  it('yields the synchronous pipeline’s batches: fashion-mnist resized by sharp in the thread', async () => {
    const ds = await loadDataset({ type: 'fashion-mnist', limit: 40, testLimit: 10 }, { dataRoot: tmp, inputSize: 36 });
    await expectSameBatches(ds, 8);
  });

  it('recycles its two buffers: a batch is refilled only after the next one was asked for', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 2, samplesPerClass: 8, valPerClass: 1, seed: 1 }, { dataRoot: tmp, inputSize: 16 });
    const batches = openTrainBatches(ds, opts(2));
    try {
      const buffers = new Set<ArrayBuffer>();
      let previous: Float32Array | null = null;
      for await (const b of batches.epoch(0, 0)) {
        if (previous) expect(previous.byteLength).toBe(0); // handed back: detached here
        expect(b.x.byteLength).toBe(2 * 16 * 16 * 3 * 4);
        buffers.add(b.x.buffer as ArrayBuffer);
        previous = b.x;
      }
      expect(buffers.size).toBe(8); // each arrival is a fresh ArrayBuffer object over a recycled block
    } finally {
      await batches.close();
    }
  });

  it('an abandoned epoch does not leak into the next one', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 2, samplesPerClass: 8, valPerClass: 1, seed: 2 }, { dataRoot: tmp, inputSize: 16 });
    const o = opts(2);
    const batches = openTrainBatches(ds, o);
    try {
      expect((await drain(batches.epoch(0, 0), 1)).length).toBe(1); // break after one batch
      const next = await drain(batches.epoch(1, 0));
      const sync = await drain(epochBatches(ds.train, { ...o, epoch: 1 }));
      expect(next.map((b) => b.x)).toEqual(sync.map((b) => b.x));
    } finally {
      await batches.close();
    }
  });
});

/**
 * Every batch of an iteration of source rows, rendered as a training thread renders them; and, for
 * each, whether peek() had shown that very batch (the same object, its bytes still there) before
 * next() returned it.
 */
async function drainSources(it: EpochIterable<EpochSourceBatch>, size: number): Promise<Array<Seen & { peeked: boolean; deferred: number }>> {
  const out: Array<Seen & { peeked: boolean; deferred: number }> = [];
  const iter = it[Symbol.asyncIterator]();
  let peeked: EpochSourceBatch | null = null;
  for (let r = await iter.next(); !r.done; r = await iter.next()) {
    const b = r.value;
    const deferred = b.rows.images.filter((p) => p.deferred).length;
    const x = new RowsRenderer(b.rows, size, new Float32Array(b.n * size * size * 3)).finish();
    out.push({ step: b.stepInEpoch, n: b.n, x, y: Int32Array.from(b.y), peeked: peeked === b, deferred });
    // Give the thread time to deliver the next batch, as a training step does.
    await new Promise((res) => setTimeout(res, 20));
    peeked = iter.peek();
    // Its bytes still there (a buffer transferred away reads as empty), where it keeps any.
    if (peeked?.rows.images.some((p) => !p.deferred?.store)) expect(peeked.rows.bytes.byteLength).toBeGreaterThan(0);
  }
  return out;
}

describe('openTrainSources: batches before the pixel pass, for training threads that render their own rows', () => {
  it('render to the synchronous pipeline’s batches, threaded and inline, and the next batch can be peeked while one is held', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 3, samplesPerClass: 6, valPerClass: 1, seed: 4 }, { dataRoot: tmp, inputSize: 24 });
    const o = opts(4);
    const threaded = openTrainSources(ds, o);
    const inline = openTrainSources(ds, o, { thread: false });
    expect([threaded.where, inline.where]).toEqual(['thread', 'inline']);
    try {
      for (const [epoch, start] of [
        [0, 0],
        [1, 2],
      ] as const) {
        const sync = await drain(epochBatches(ds.train, { ...o, epoch, startStepInEpoch: start }));
        for (const got of [await drainSources(threaded.epoch(epoch, start), 24), await drainSources(inline.epoch(epoch, start), 24)]) {
          expect(got.map((b) => b.step)).toEqual(sync.map((b) => b.step));
          expect(got.map((b) => b.y)).toEqual(sync.map((b) => b.y));
          expect(got.map((b) => b.x)).toEqual(sync.map((b) => b.x));
          // Every batch after the first was seen by peek() before it was trained on.
          expect(got.map((b) => b.peeked)).toEqual(got.map((_, k) => k > 0));
        }
      }
      // The same rows as epochSources gives the synchronous pipeline.
      // (ds.train's images were all rendered by epochBatches above: nothing is deferred here.)
      const direct = (await drainSources(epochSources(ds.train, { ...o, epoch: 0 }), 24)).map((b) => b.x);
      expect(direct).toEqual((await drain(epochBatches(ds.train, { ...o, epoch: 0 }))).map((b) => b.x));
    } finally {
      await threaded.close();
    }
  });
  it('hand the first epoch’s synthetic images over unrendered, rendered once by the thread that trains on them', async () => {
    const load = () => loadDataset({ type: 'synthetic', classes: 2, samplesPerClass: 9, valPerClass: 1, seed: 5 }, { dataRoot: tmp, inputSize: 24 });
    const o = { ...opts(4), dropLast: false };
    const reference = await load();
    for (const thread of [true, false]) {
      const ds = await load();
      const sources = openTrainSources(ds, o, { thread });
      try {
        for (const epoch of [0, 1]) {
          const sync = await drain(epochBatches(reference.train, { ...o, epoch }));
          const got = await drainSources(sources.epoch(epoch, 0), 24);
          expect(got.map((b) => b.x)).toEqual(sync.map((b) => b.x));
          // Epoch 0: every image a recipe; epoch 1: every image the pixels epoch 0's render stored.
          expect(got.map((b) => b.deferred)).toEqual(got.map((b) => (epoch === 0 ? b.n : 0)));
        }
      } finally {
        await sources.close();
      }
    }
  });
});

describe('errors from the batch thread', () => {
  let root: string;
  beforeAll(async () => {
    root = path.join(tmp, 'folders');
    const png = (rgb: [number, number, number]) =>
      sharp({ create: { width: 20, height: 20, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
        .png()
        .toBuffer();
    // A JPEG whose header reads fine (so it passes the scan) and whose data is cut off.
    const noise = Buffer.alloc(48 * 48 * 3);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
    const jpg = await sharp(noise, { raw: { width: 48, height: 48, channels: 3 } })
      .jpeg()
      .toBuffer();
    const truncated = jpg.subarray(0, Math.floor(jpg.length * 0.6));
    for (const [set, badCat] of [
      ['one-bad', 1],
      ['all-bad', 4],
    ] as const) {
      for (let k = 0; k < 4; k++) {
        await mkdir(path.join(root, set, 'train', 'cat'), { recursive: true });
        await mkdir(path.join(root, set, 'train', 'dog'), { recursive: true });
        await mkdir(path.join(root, set, 'val', 'cat'), { recursive: true });
        await mkdir(path.join(root, set, 'val', 'dog'), { recursive: true });
        await writeFile(path.join(root, set, 'train', 'cat', `${k}.${k < badCat ? 'jpg' : 'png'}`), k < badCat ? truncated : await png([200, 90, 0]));
        await writeFile(path.join(root, set, 'train', 'dog', `${k}.png`), await png([0, 90, 200]));
      }
      await writeFile(path.join(root, set, 'val', 'cat', '0.png'), await png([200, 90, 0]));
      await writeFile(path.join(root, set, 'val', 'dog', '0.png'), await png([0, 90, 200]));
    }
  });

  const load = (set: string, warnings: DataWarning[]) =>
    loadDataset({ type: 'imagefolder', path: set, valSplit: 0.2 }, { dataRoot: root, inputSize: 16, onWarning: (w) => warnings.push(w) });

  it('forwards an unreadable image’s warning and substitutes it exactly as inline', async () => {
    const warnings: DataWarning[] = [];
    const ds = await load('one-bad', warnings);
    expect(warnings).toEqual([]); // the header is fine: the scan keeps the file
    const batches = openTrainBatches(ds, opts(2, false), { onWarning: (w) => warnings.push(w) });
    try {
      const got = await drain(batches.epoch(0, 0));
      expect(warnings.map((w) => w.code)).toEqual(['IMAGE_UNREADABLE']);
      expect(warnings[0].message).toMatch(/0\.jpg/);
      expect(ds.stats.skipped).toBe(1);
      const inlineWarnings: DataWarning[] = [];
      const ds2 = await load('one-bad', inlineWarnings);
      const sync = await drain(epochBatches(ds2.train, { ...opts(2, false), epoch: 0 }));
      expect(got.map((b) => b.x)).toEqual(sync.map((b) => b.x));
      // The same file, skipped the same way. The decoder's reason after the colon is not compared:
      // libvips keeps one error buffer per process, and a concurrent decode can leave sharp with
      // "Unknown error" instead of "premature end of JPEG image" (seen inline as well).
      const skippedFile = (ws: DataWarning[]) => ws.map((w) => [w.code, w.message.split(': ')[0]]);
      expect(skippedFile(inlineWarnings)).toEqual(skippedFile(warnings));
    } finally {
      await batches.close();
    }
  });

  it('a class with no decodable image fails with the same DatasetError as inline, then closes cleanly', async () => {
    const inline = await load('all-bad', []);
    const syncError = await drain(epochBatches(inline.train, { ...opts(2, false), epoch: 0 })).catch((e: unknown) => e);
    expect(syncError).toBeInstanceOf(DatasetError);

    const ds = await load('all-bad', []);
    const batches = openTrainBatches(ds, opts(2, false));
    const err = await drain(batches.epoch(0, 0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatasetError);
    expect((err as DatasetError).code).toBe('DATASET_EMPTY');
    expect((err as DatasetError).message).toBe((syncError as DatasetError).message);
    await batches.close();
  });

  it('a thread that dies fails the waiting batch with DATA_THREAD_FAILED instead of hanging', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 2, samplesPerClass: 4, valPerClass: 1, seed: 3 }, { dataRoot: tmp, inputSize: 16 });
    // A source the thread cannot rebuild: splitFromSource throws there while loading.
    const broken: Dataset = { ...ds, train: Object.assign(Object.create(Object.getPrototypeOf(ds.train)), ds.train, { source: { type: 'nope' } }) };
    const batches: TrainBatches = openTrainBatches(broken, opts(2));
    const err = await drain(batches.epoch(0, 0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BatchThreadError);
    expect((err as BatchThreadError).code).toBe('DATA_THREAD_FAILED');
    await batches.close();
  });
});
