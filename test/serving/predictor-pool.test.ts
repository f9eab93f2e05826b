import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PredictorPool } from '../../src/serving/predictor-pool.js';
import { runIntegerReference } from '../../src/export/qdq-reference.js';
import { syntheticImages } from '../../testkit/synthetic-graph.js';
import { writeFixtureModel, type FixtureModel } from './fixtures.js';
import { rgbToNchw } from '../../src/serving/preprocess.js';

let root: string;
let model: FixtureModel;
const SIZE = 32;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'qatserve-pool-'));
  model = await writeFixtureModel(root, 'm1', { inputSize: SIZE, classes: 5 });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const image = (i: number) => syntheticImages(1, SIZE, 100 + i);

describe('PredictorPool', () => {
  it('returns the int8 model logits for each request, batched or not', async () => {
    const pool = new PredictorPool({ size: 2, batchWindowMs: 20, maxBatch: 4 });
    try {
      await pool.load('m1', model.onnxFile);
      const n = 10;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => pool.infer('m1', image(i), SIZE)));
      const step = model.graph.nodes.at(-1)!.outQuant.scale;
      for (let i = 0; i < n; i++) {
        const ref = runIntegerReference(model.graph, image(i), 1);
        expect(results[i].logits).toHaveLength(5);
        for (let k = 0; k < 5; k++) expect(Math.abs(results[i].logits[k] - ref[k])).toBeLessThanOrEqual(step * 1.01);
      }
      // Ten requests inside a 20 ms window with maxBatch 4 run as batches of up to 4.
      const sizes = results.map((r) => r.batchSize);
      expect(Math.max(...sizes)).toBeGreaterThan(1);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(4);
    } finally {
      await pool.close();
    }
  });

  it('gives RGB bytes normalized in the worker the same logits as the float input normalized here', async () => {
    const norm = model.graph.normalization;
    const rgb = (i: number) => Uint8Array.from({ length: 3 * SIZE * SIZE }, (_, j) => (j * 31 + i * 97 + (j >> 5)) & 255);
    const pool = new PredictorPool({ size: 2, batchWindowMs: 20, maxBatch: 4 });
    try {
      await pool.load('m1', model.onnxFile);
      const n = 6;
      // Inside one window: batches of RGB only (normalized in the worker) and, below, batches
      // mixing both kinds (normalized on the main thread).
      const fromRgb = await Promise.all(Array.from({ length: n }, (_, i) => pool.infer('m1', { rgb: rgb(i), normalization: norm }, SIZE)));
      const fromFloat = await Promise.all(Array.from({ length: n }, (_, i) => pool.infer('m1', rgbToNchw(rgb(i), SIZE, norm), SIZE)));
      const mixed = await Promise.all(
        Array.from({ length: n }, (_, i) => pool.infer('m1', i % 2 ? { rgb: rgb(i), normalization: norm } : rgbToNchw(rgb(i), SIZE, norm), SIZE)),
      );
      expect(Math.max(...fromRgb.map((r) => r.batchSize))).toBeGreaterThan(1);
      for (let i = 0; i < n; i++) {
        expect(Array.from(fromRgb[i].logits)).toEqual(Array.from(fromFloat[i].logits));
        expect(Array.from(mixed[i].logits)).toEqual(Array.from(fromFloat[i].logits));
      }
      await expect(pool.infer('m1', { rgb: new Uint8Array(7), normalization: norm }, SIZE)).rejects.toThrow(/7 values/);
    } finally {
      await pool.close();
    }
  });

  it('keeps the event loop free while inferring (sessions run in worker threads)', async () => {
    const pool = new PredictorPool({ size: 1, batchWindowMs: 0, maxBatch: 1 });
    try {
      await pool.load('m1', model.onnxFile);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const t0 = performance.now();
      for (let r = 0; r < 5; r++) await Promise.all(Array.from({ length: 8 }, (_, i) => pool.infer('m1', image(i), SIZE)));
      const elapsed = performance.now() - t0;
      clearInterval(timer);
      // A 1 ms timer fires about elapsed/1.2 times when nothing blocks; a blocked loop fires rarely.
      expect(ticks).toBeGreaterThan(elapsed / 4);
    } finally {
      await pool.close();
    }
  });

  it('rejects requests for a model it has not loaded; on close answers the run in flight and rejects the queued', async () => {
    const pool = new PredictorPool({ size: 1 });
    await expect(pool.infer('nope', image(0), SIZE)).rejects.toMatchObject({ code: 'PREDICTOR_FAILED' });
    await pool.load('m1', model.onnxFile);
    // The idle pool runs the first request at once; the second waits behind it.
    const running = pool.infer('m1', image(0), SIZE).catch((err: unknown) => err);
    const queued = pool.infer('m1', image(1), SIZE).catch((err: unknown) => err);
    await pool.close();
    expect(await running).toMatchObject({ batchSize: 1 });
    expect(((await running) as { logits: Float32Array }).logits.length).toBeGreaterThan(0);
    expect(await queued).toMatchObject({ code: 'PREDICTOR_CLOSED' });
    await expect(pool.infer('m1', image(0), SIZE)).rejects.toMatchObject({ code: 'PREDICTOR_CLOSED' });
  });

  it('replaces a worker that dies and reloads its models', async () => {
    const pool = new PredictorPool({ size: 1, batchWindowMs: 0 });
    try {
      await pool.load('m1', model.onnxFile);
      const internal = pool as unknown as { workers: Array<{ worker: import('node:worker_threads').Worker }> };
      const dying = internal.workers[0].worker;
      await dying.terminate();
      // The replacement loads m1 before taking work; the request waits for it.
      await new Promise((r) => setTimeout(r, 50));
      expect(internal.workers[0].worker).not.toBe(dying);
      const r = await pool.infer('m1', image(1), SIZE);
      expect(r.logits).toHaveLength(5);
    } finally {
      await pool.close();
    }
  });

  it('reloads a dead worker even when the model file it loaded from is gone', async () => {
    // The API's model cache removes copies (least recently used, deleted models) while their
    // models stay loaded; a replacement worker must not need the file.
    const copy = path.join(root, 'copy.onnx');
    await copyFile(model.onnxFile, copy);
    const pool = new PredictorPool({ size: 1, batchWindowMs: 0 });
    try {
      await pool.load('m1', copy);
      await rm(copy);
      const internal = pool as unknown as { workers: Array<{ worker: import('node:worker_threads').Worker }> };
      await internal.workers[0].worker.terminate();
      const r = await pool.infer('m1', image(2), SIZE);
      const ref = runIntegerReference(model.graph, image(2), 1);
      const step = model.graph.nodes.at(-1)!.outQuant.scale;
      for (let k = 0; k < 5; k++) expect(Math.abs(r.logits[k] - ref[k])).toBeLessThanOrEqual(step * 1.01);
    } finally {
      await pool.close();
    }
  });

  it('fails a load of a broken file without keeping the model', async () => {
    const pool = new PredictorPool({ size: 1 });
    try {
      await expect(pool.load('bad', model.manifestFile)).rejects.toThrow(/inference worker/);
      expect(pool.isLoaded('bad')).toBe(false);
    } finally {
      await pool.close();
    }
  });
});
