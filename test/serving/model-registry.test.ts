import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PredictorPool } from '../../src/serving/predictor-pool.js';
import { ModelRegistry } from '../../src/serving/model-registry.js';
import { modelFilesIn } from '../../src/serving/model-store.js';
import { MemoryModelStore } from '../../testkit/memory-model-store.js';
import { ServingService } from '../../src/serving/prediction-service.js';
import { makeImage, writeFixtureModel, type FixtureModel } from './fixtures.js';
import { DataType, decodeModel } from '../../src/export/onnx-proto.js';

let root: string;
let a: FixtureModel;
let b: FixtureModel;
let c: FixtureModel;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'qatserve-registry-'));
  a = await writeFixtureModel(root, 'a', { seed: 1, createdAt: new Date('2026-01-01') });
  b = await writeFixtureModel(root, 'b', { seed: 2, createdAt: new Date('2026-01-02') });
  c = await writeFixtureModel(root, 'c', { seed: 3, createdAt: new Date('2026-01-03') });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('ModelRegistry', () => {
  it('serves nothing (NO_MODEL) until a model exists, then the newest', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    const pool = new PredictorPool({ size: 1 });
    const reg = new ModelRegistry(store, pool, { pollMs: 0 });
    try {
      await reg.start();
      await expect(reg.acquire()).rejects.toMatchObject({ statusCode: 503, code: 'NO_MODEL', message: expect.stringContaining('train one') });
      // A model that waits for a promotion: still NO_MODEL, but the answer says to promote it, not to train one.
      store.add({ ...a.record, id: 'held', autoServe: false });
      const held = reg.acquire();
      await expect(held).rejects.toMatchObject({ statusCode: 503, code: 'NO_MODEL' });
      await expect(held).rejects.toThrow(/^no model serves yet: the stored models \(the newest is held, of job .*\) serve only once an admin promotes one/);
      store.add(a.record);
      store.add(b.record);
      const lease = await reg.acquire(); // a request with no model triggers a refresh
      expect(lease.model.record.id).toBe('b');
      lease.release();
      expect(pool.loadedModels()).toEqual(['b']);
    } finally {
      await reg.close();
      await pool.close();
    }
  });

  it('answers MODEL_UNAVAILABLE with the reason, not NO_MODEL, while models exist and none loads', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    // A model whose files are not in this machine's store (an fs store on another machine's disk).
    store.add({ ...a.record, id: 'elsewhere', onnxKey: 'missing/model.onnx', manifestKey: 'missing/manifest.json' });
    const pool = new PredictorPool({ size: 1 });
    const reg = new ModelRegistry(store, pool, { pollMs: 0 });
    try {
      await reg.start();
      expect(reg.readiness()).toMatchObject({ state: 'failing', wantedId: 'elsewhere' });
      const refused = reg.acquire();
      await expect(refused).rejects.toMatchObject({ statusCode: 503, code: 'MODEL_UNAVAILABLE' });
      await expect(refused).rejects.toThrow(/^no model can serve: model "elsewhere" cannot be loaded: its manifest is missing/);
      store.add(b.record); // a newer one that loads serves at the next refresh
      await reg.refresh();
      const lease = await reg.acquire();
      expect(lease.model.record.id).toBe('b');
      lease.release();
    } finally {
      await reg.close();
      await pool.close();
    }
  });

  it('swaps to a newer model without failing in-flight requests, then holds only the new one', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    store.add(a.record);
    const svc = new ServingService({ store, size: 2, batchWindowMs: 2, maxBatch: 4, pollMs: 0 });
    try {
      await svc.start();
      const img = await makeImage('jpeg', 64, 64);
      const first = Array.from({ length: 24 }, () => svc.predict(img));
      // While those run, a newer model appears and the registry swaps.
      store.add(b.record);
      const swap = svc.registry.refresh();
      const during = Array.from({ length: 24 }, () => svc.predict(img));
      await swap;
      const after = Array.from({ length: 8 }, () => svc.predict(img));
      // Every request succeeds: the old model stays loaded until its requests are done.
      const results = await Promise.all([...first, ...during, ...after]);
      expect(results.slice(0, 24).every((r) => r.model.id === 'a')).toBe(true);
      expect(results.slice(48).every((r) => r.model.id === 'b')).toBe(true);
      for (const r of results) expect(r.predictions[0].label.startsWith(`${r.model.id}-label-`)).toBe(true);
      // Once the old model's requests are done, it is gone from every worker.
      expect(svc.pool.loadedModels()).toEqual(['b']);
      expect(svc.registry.loadedIds()).toEqual(['b']);
    } finally {
      await svc.close();
    }
  });

  it('keeps the old model loaded exactly as long as a request holds it', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    store.add(a.record);
    const pool = new PredictorPool({ size: 1 });
    const reg = new ModelRegistry(store, pool, { pollMs: 0 });
    try {
      await reg.start();
      const lease = await reg.acquire();
      store.add(b.record);
      await reg.refresh();
      expect(reg.currentId()).toBe('b');
      expect(pool.loadedModels().sort()).toEqual(['a', 'b']); // 'a' still answers its request
      const r = await pool.infer('a', new Float32Array(3 * 32 * 32), 32);
      expect(r.logits).toHaveLength(5);
      lease.release();
      expect(pool.loadedModels()).toEqual(['b']);
    } finally {
      await reg.close();
      await pool.close();
    }
  });

  it('promotion pins an older model; ?model= loads another on demand and evicts it later', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    for (const m of [a, b, c]) store.add(m.record);
    const svc = new ServingService({ store, size: 1, pollMs: 0, maxExtraModels: 1 });
    try {
      await svc.start();
      const img = await makeImage('png', 40, 40);
      expect((await svc.predict(img)).model.id).toBe('c');
      await store.promote('a');
      await svc.registry.refresh();
      expect((await svc.predict(img)).model.id).toBe('a');
      expect((await svc.predict(img, { modelId: 'b' })).model.id).toBe('b');
      expect(svc.pool.loadedModels().sort()).toEqual(['a', 'b']);
      expect((await svc.predict(img, { modelId: 'c' })).model.id).toBe('c');
      expect(svc.pool.loadedModels().sort()).toEqual(['a', 'c']); // b evicted (one extra allowed)
      await expect(svc.predict(img, { modelId: 'zzz' })).rejects.toMatchObject({ statusCode: 404, code: 'MODEL_NOT_FOUND' });
    } finally {
      await svc.close();
    }
  });

  it('rations loads on demand: one at a time, PREDICT_MODEL_LOADS_PER_MINUTE a minute, then 503 MODEL_LOADS_BUSY; loaded models still answer', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    for (const m of [a, b, c]) store.add(m.record);
    const svc = new ServingService({ store, size: 1, pollMs: 0, maxExtraModels: 1, maxLoadsPerMinute: 2 });
    try {
      await svc.start();
      const img = await makeImage('png', 40, 40);
      // Two models named at once: one loads, the other is refused rather than queued behind it.
      const both = await Promise.allSettled(['a', 'b'].map((id) => svc.predict(img, { modelId: id })));
      const done = both.flatMap((r) => (r.status === 'fulfilled' ? [r.value.model.id] : []));
      const refused = both.flatMap((r) => (r.status === 'rejected' ? [r.reason as object] : []));
      expect([done.length, refused.length]).toEqual([1, 1]);
      expect(refused[0]).toMatchObject({ statusCode: 503, code: 'MODEL_LOADS_BUSY', retryAfterSeconds: 1 });
      const [first, second] = done[0] === 'a' ? ['a', 'b'] : ['b', 'a'];
      expect((await svc.predict(img, { modelId: second })).model.id).toBe(second); // the second load of the minute
      const third = svc.predict(img, { modelId: first }); // evicted for the second (one extra kept): a third load
      await expect(third).rejects.toMatchObject({ statusCode: 503, code: 'MODEL_LOADS_BUSY' });
      const err = (await third.catch((e: unknown) => e)) as { message: string; retryAfterSeconds: number };
      expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(55);
      expect(err.message).toContain('PREDICT_MODEL_LOADS_PER_MINUTE');
      expect((await svc.predict(img, { modelId: second })).model.id).toBe(second);
      expect((await svc.predict(img)).model.id).toBe('c');
    } finally {
      await svc.close();
    }
  });

  it('a model whose record is gone stops answering ?model= at the next refresh, and so does a last good one it fell back to', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    for (const m of [a, b, c]) store.add(m.record);
    const svc = new ServingService({ store, size: 1, pollMs: 0, maxExtraModels: 1 });
    try {
      await svc.start();
      const img = await makeImage('png', 40, 40);
      expect((await svc.predict(img, { modelId: 'b' })).model.id).toBe('b');
      store.remove('b'); // its job deleted through another replica
      await svc.registry.refresh();
      expect(svc.pool.loadedModels()).toEqual(['c']);
      await expect(svc.predict(img, { modelId: 'b' })).rejects.toMatchObject({ statusCode: 404, code: 'MODEL_NOT_FOUND' });
      // c serves; the wanted model after it is one whose file is not there (does not load).
      store.add({ ...a.record, id: 'broken', onnxKey: 'missing/model.onnx', createdAt: new Date('2026-01-04') });
      await svc.registry.refresh();
      expect(svc.registry.readiness()).toMatchObject({ state: 'fallback', servingId: 'c', wantedId: 'broken' });
      store.remove('c'); // the next good one serves instead
      await svc.registry.refresh();
      expect(svc.registry.readiness()).toMatchObject({ state: 'fallback', servingId: 'a', wantedId: 'broken' });
      expect(svc.pool.loadedModels()).toEqual(['a']);
      expect((await svc.predict(img)).model.id).toBe('a');
    } finally {
      await svc.close();
    }
  });

  it('refuses a model whose file does not match its sha256 and keeps serving the current one', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    store.add(a.record);
    const svc = new ServingService({ store, size: 1, pollMs: 0 });
    try {
      await svc.start();
      const badDir = await writeFixtureModel(root, 'tampered', { seed: 9, createdAt: new Date('2026-02-01') });
      await writeFile(badDir.onnxFile, Buffer.from('not the model'));
      store.add(badDir.record);
      await svc.registry.refresh();
      expect(svc.registry.readiness()).toMatchObject({ state: 'fallback', servingId: 'a', wantedId: 'tampered' });
      expect(svc.registry.readiness().reason).toMatch(/sha256/);
      expect((await svc.predict(await makeImage('png'))).model.id).toBe('a');
    } finally {
      await svc.close();
    }
  });

  it('refuses a model whose stored manifest is invalid or describes another model (MODEL_MANIFEST_INVALID), and keeps serving the current one', async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    store.add(a.record);
    const svc = new ServingService({ store, size: 1, pollMs: 0 });
    const edit = async (m: FixtureModel, change: (manifest: Record<string, unknown>) => void) => {
      const manifest = JSON.parse(await readFile(m.manifestFile, 'utf8'));
      change(manifest);
      await writeFile(m.manifestFile, JSON.stringify(manifest));
    };
    try {
      await svc.start();
      // Not a manifest this version reads: an unknown weight encoding.
      const invalid = await writeFixtureModel(root, 'invalid', { seed: 7, createdAt: new Date('2026-02-02') });
      await edit(invalid, (m) => ((m.quantization as Record<string, unknown>).weightEncoding = 'int4'));
      store.add(invalid.record);
      await svc.registry.refresh();
      expect(svc.registry.readiness()).toMatchObject({ state: 'fallback', servingId: 'a', wantedId: 'invalid' });
      expect(svc.registry.readiness().reason).toMatch(/quantization\.weightEncoding/);
      await expect(svc.predict(await makeImage('png'), { modelId: 'invalid' })).rejects.toMatchObject({ statusCode: 503, code: 'MODEL_MANIFEST_INVALID' });

      // A valid manifest, but its labels are not the recorded model's: answers would be mislabelled.
      const relabelled = await writeFixtureModel(root, 'relabelled', { seed: 8, createdAt: new Date('2026-02-03') });
      await edit(relabelled, (m) => (m.classes as string[]).reverse());
      store.add(relabelled.record);
      await svc.registry.refresh();
      expect(svc.registry.readiness()).toMatchObject({ state: 'fallback', servingId: 'a', wantedId: 'relabelled' });
      expect(svc.registry.readiness().reason).toMatch(/does not describe its recorded model \(classes differ\)/);
      expect((await svc.predict(await makeImage('png'))).model.id).toBe('a');
      expect(svc.registry.currentId()).toBe('a');
    } finally {
      await svc.close();
    }
  });

  it('serves int8-stored 8-bit weights as the uint8-stored file computes them where they would saturate', async () => {
    // Exported on a CPU with VNNI (int8 storage verified there), served on one without.
    const exported = await writeFixtureModel(root, 'vnni', { seed: 1, weightEncoding: 'int8' });
    const input = new Float32Array(3 * 32 * 32).map((_, i) => Math.sin(i) * 2);
    for (const saturates of [true, false]) {
      const store = new MemoryModelStore(modelFilesIn(root));
      store.add(exported.record);
      const pool = new PredictorPool({ size: 1 });
      const loaded: Array<string | Uint8Array> = [];
      const load = pool.load.bind(pool);
      pool.load = (id, source) => (loaded.push(source), load(id, source));
      const reg = new ModelRegistry(store, pool, { pollMs: 0, u8s8Saturates: saturates });
      try {
        await reg.start();
        const lease = await reg.acquire('vnni');
        const served = await pool.infer('vnni', input, 32);
        lease.release();
        await pool.load('uint8', a.onnxFile); // the same graph (seed 1) stored as uint8
        const reference = await pool.infer('uint8', input, 32);
        if (saturates) {
          expect(loaded[0]).toBeInstanceOf(Uint8Array);
          expect(decodeModel(loaded[0] as Uint8Array).graph.initializer.some((t) => t.dataType === DataType.INT8)).toBe(false);
          expect(Array.from(served.logits)).toEqual(Array.from(reference.logits));
        } else {
          expect(loaded[0]).toBe(path.join(root, exported.record.onnxKey));
        }
      } finally {
        await reg.close();
        await pool.close();
      }
    }
  });
});
