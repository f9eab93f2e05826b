import { describe, expect, it } from 'vitest';
import { epochBatches, stepsPerEpoch, stratifiedEpochOrder, type EpochBatch } from '../../src/data/batching.js';
import { loadDataset } from '../../src/data/index.js';
import { ImageSplit, type BatchAugment, type Split } from '../../src/data/split.js';

/** A split whose image i is a 4x4 grey image filled with value i; records every batch request. */
function recordingSplit(n: number, delayMs = (_: number) => 0) {
  const requests: number[][] = [];
  const inner = new ImageSplit(
    Int32Array.from({ length: n }, (_, i) => i % 3),
    4,
    async (i) => {
      await new Promise((r) => setTimeout(r, delayMs(i)));
      return { data: new Uint8Array(16).fill(i), side: 4, channels: 1 };
    },
  );
  const split: Split = {
    length: n,
    labels: inner.labels,
    batch(indices: ArrayLike<number>, aug: BatchAugment) {
      requests.push(Array.from(indices));
      return inner.batch(indices, aug);
    },
    sources(indices: ArrayLike<number>, aug: BatchAugment) {
      requests.push(Array.from(indices));
      return inner.sources(indices, aug);
    },
  };
  return { split, requests };
}

/** The byte each sample of a (non-augmented) batch was filled with = its sample index. */
const sampleIds = (b: { x: Float32Array; n: number }) => Array.from({ length: b.n }, (_, k) => Math.round((b.x[k * 48] * 0.229 + 0.485) * 255) || 0);

async function collect(it: AsyncIterable<EpochBatch>): Promise<EpochBatch[]> {
  const out: EpochBatch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

describe('stratifiedEpochOrder', () => {
  const counts = (ids: number[], labels: number[], k: number) => {
    const c = new Array(k).fill(0);
    for (const i of ids) c[labels[i]]++;
    return c;
  };

  it('is a deterministic permutation per (seed, epoch)', () => {
    const labels = Array.from({ length: 500 }, (_, i) => (i * 7) % 5);
    const a = stratifiedEpochOrder(1, 0, labels);
    expect([...a].sort((x, y) => x - y)).toEqual(labels.map((_, i) => i));
    expect(stratifiedEpochOrder(1, 0, labels)).toEqual(a);
    expect(stratifiedEpochOrder(1, 1, labels)).not.toEqual(a);
    expect(stratifiedEpochOrder(2, 0, labels)).not.toEqual(a);
    expect(stratifiedEpochOrder(1, 0, [])).toEqual(new Int32Array(0));
  });

  it('gives every batch the classes in their overall proportions', () => {
    // Balanced: 4 classes x 32, batches of 16 hold exactly 4 of each.
    const balanced = Array.from({ length: 128 }, (_, i) => i % 4);
    const order = Array.from(stratifiedEpochOrder(5, 0, balanced));
    for (let b = 0; b < 8; b++) expect(counts(order.slice(b * 16, b * 16 + 16), balanced, 4)).toEqual([4, 4, 4, 4]);
    // Imbalanced 60/30/10: batches of 10 hold 6/3/1, each within one.
    const skewed = Array.from({ length: 100 }, (_, i) => (i < 60 ? 0 : i < 90 ? 1 : 2));
    const o2 = Array.from(stratifiedEpochOrder(5, 3, skewed));
    for (let b = 0; b < 10; b++) {
      const [c0, c1, c2] = counts(o2.slice(b * 10, b * 10 + 10), skewed, 3);
      expect(Math.abs(c0 - 6)).toBeLessThanOrEqual(1);
      expect(Math.abs(c1 - 3)).toBeLessThanOrEqual(1);
      expect(Math.abs(c2 - 1)).toBeLessThanOrEqual(1);
    }
  });
});

describe('stepsPerEpoch', () => {
  it('floors with drop_last and ceils without', () => {
    expect(stepsPerEpoch(10, 4, true)).toBe(2);
    expect(stepsPerEpoch(10, 4, false)).toBe(3);
    expect(stepsPerEpoch(8, 4, true)).toBe(2);
    expect(stepsPerEpoch(3, 4, true)).toBe(0);
  });
});

describe('epochBatches', () => {
  it('yields the shuffled order in batch-size chunks, dropping the last partial batch for training', async () => {
    const { split } = recordingSplit(10);
    const batches = await collect(epochBatches(split, { batchSize: 4, seed: 3, epoch: 2, shuffle: true, augment: false, dropLast: true }));
    const order = Array.from(stratifiedEpochOrder(3, 2, split.labels));
    expect(batches.map((b) => b.stepInEpoch)).toEqual([0, 1]);
    expect(batches.map(sampleIds)).toEqual([order.slice(0, 4), order.slice(4, 8)]);
    expect(Array.from(batches[0].y)).toEqual(order.slice(0, 4).map((i) => i % 3));
  });

  it('keeps the partial batch and the natural order for evaluation', async () => {
    const { split } = recordingSplit(10);
    const batches = await collect(epochBatches(split, { batchSize: 4, seed: 3, epoch: 2, shuffle: false, augment: false, dropLast: false }));
    expect(batches.map(sampleIds)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
    expect(batches[2].n).toBe(2);
    expect(batches[2].x.length).toBe(2 * 4 * 4 * 3);
  });

  it('prefetches `prefetch` batches ahead and still yields in order when later batches finish first', async () => {
    // Early samples are slow, later ones fast: completion order differs from step order.
    const { split, requests } = recordingSplit(12, (i) => (i < 4 ? 30 : 1));
    const it = epochBatches(split, { batchSize: 2, seed: 1, epoch: 0, shuffle: false, augment: false, dropLast: true, prefetch: 2 })[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value!.stepInEpoch).toBe(0);
    // while the consumer holds batch 0, batches 1 and 2 (the prefetch window) are already requested
    expect(requests.length).toBe(3);
    const rest: number[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value.stepInEpoch);
    expect(rest).toEqual([1, 2, 3, 4, 5]);
  });

  it('with prefetch 0 renders on demand only', async () => {
    const { split, requests } = recordingSplit(8);
    const it = epochBatches(split, { batchSize: 2, seed: 1, epoch: 0, shuffle: false, augment: false, dropLast: true, prefetch: 0 })[Symbol.asyncIterator]();
    await it.next();
    expect(requests.length).toBe(1);
  });

  it('stops requesting when the consumer breaks out', async () => {
    const { split, requests } = recordingSplit(40);
    for await (const b of epochBatches(split, { batchSize: 2, seed: 1, epoch: 0, shuffle: true, augment: false, dropLast: true })) {
      if (b.stepInEpoch === 1) break;
    }
    const after = requests.length;
    await new Promise((r) => setTimeout(r, 20));
    expect(requests.length).toBe(after);
    expect(after).toBeLessThanOrEqual(5);
  });

  it('resuming at startStepInEpoch reproduces the rest of an uninterrupted epoch exactly (order and augmentation)', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 3, samplesPerClass: 10, valPerClass: 2, seed: 4 }, { dataRoot: '/nonexistent', inputSize: 32 });
    const opts = { batchSize: 4, seed: 11, epoch: 5, shuffle: true, augment: true, dropLast: true };
    const full = await collect(epochBatches(ds.train, opts));
    expect(full.length).toBe(7);
    const resumed = await collect(epochBatches(ds.train, { ...opts, startStepInEpoch: 3 }));
    expect(resumed.map((b) => b.stepInEpoch)).toEqual([3, 4, 5, 6]);
    resumed.forEach((b, k) => {
      expect(b.y).toEqual(full[k + 3].y);
      expect(b.x).toEqual(full[k + 3].x);
    });
    // A fresh dataset object (new process after a crash) gives the same batches too.
    const ds2 = await loadDataset({ type: 'synthetic', classes: 3, samplesPerClass: 10, valPerClass: 2, seed: 4 }, { dataRoot: '/nonexistent', inputSize: 32 });
    const again = await collect(epochBatches(ds2.train, { ...opts, startStepInEpoch: 6 }));
    expect(again[0].x).toEqual(full[6].x);
  });

  it('batch augmentation is a pure function of (seed, epoch, step, position)', async () => {
    const ds = await loadDataset({ type: 'synthetic', classes: 2, samplesPerClass: 4, valPerClass: 1, seed: 1 }, { dataRoot: '/nonexistent', inputSize: 32 });
    const idx = [0, 5, 2, 7];
    const at = (aug: Partial<BatchAugment>) => ds.train.batch(idx, { augment: true, seed: 1, epoch: 0, step: 0, ...aug });
    const base = await at({});
    expect((await at({})).x).toEqual(base.x);
    for (const change of [{ seed: 2 }, { epoch: 1 }, { step: 1 }]) expect((await at(change)).x).not.toEqual(base.x);
    const plain = await at({ augment: false });
    expect(plain.x).not.toEqual(base.x);
    expect((await at({ augment: false, seed: 99, step: 5 })).x).toEqual(plain.x); // no augmentation: nothing random
    expect(Array.from(base.y)).toEqual([0, 1, 0, 1]);
  });

  it('rejects bad options', () => {
    const { split } = recordingSplit(4);
    expect(() => epochBatches(split, { batchSize: 0, seed: 1, epoch: 0, shuffle: false, augment: false, dropLast: true })).toThrow(RangeError);
    expect(() => epochBatches(split, { batchSize: 2, seed: 1, epoch: 0, shuffle: false, augment: false, dropLast: true, startStepInEpoch: -1 })).toThrow(
      RangeError,
    );
  });

  it('surfaces a failing batch to the consumer', async () => {
    const fail = async () => {
      throw new Error('disk gone');
    };
    const split: Split = { length: 4, labels: new Int32Array(4), batch: fail, sources: fail };
    await expect(collect(epochBatches(split, { batchSize: 2, seed: 1, epoch: 0, shuffle: false, augment: false, dropLast: true }))).rejects.toThrow(
      'disk gone',
    );
  });
});
