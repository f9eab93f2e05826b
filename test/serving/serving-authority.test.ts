// What /v1/predict serves changes only by authority, over real HTTP with the Prisma store: a
// `train` key's models never serve on their own, an admin promotes them; a promotion is refused
// (and nothing changes) when the model does not load; at start-up a broken serving model falls
// back to the last good one, in /readyz and the logs. Plus the upload rules of the serving path:
// the pixel limit, declared type against decoded format, and the bounded queue (503 + Retry-After).
import { Writable } from 'node:stream';
import { readFile, writeFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.js';
import { KeyStore } from '../../src/auth/key-store.js';
import { startHarness, tinySynthetic, type Harness } from '../api/api-harness.js';
import { bearer, leaks } from '../api/api-process.js';
import { insertModelRow, makeImage, writeFixtureModel, type FixtureModel } from './fixtures.js';
import { jpegWithClaimedSize } from './bad-images.js';

/** The Model row a worker writes after a verified export, for an existing job. */
async function addModel(h: Harness, jobId: string, m: FixtureModel, createdAt: Date): Promise<void> {
  await insertModelRow(h.deps.db.prisma, m, jobId, createdAt);
}

async function post(base: string, url: string, body: string | FormData | Buffer, headers: Record<string, string>) {
  const res = await fetch(`${base}${url}`, { method: 'POST', body: Buffer.isBuffer(body) ? new Uint8Array(body) : body, headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: JSON.parse(text) };
}

describe('serving by authority', () => {
  let h: Harness;
  let base: string;
  let admin: string;
  let trainer: string;
  let predictor: string;
  const png = () => makeImage('png', 40, 40);

  beforeAll(async () => {
    h = await startHarness('sqlite', { MODEL_POLL_MS: '0', PREDICT_WORKERS: '1' });
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const keys = new KeyStore(h.deps.db.prisma);
    admin = (await keys.create('admin', 'admin')).key;
    trainer = (await keys.create('trainer', 'train')).key;
    predictor = (await keys.create('client', 'predict')).key;
  });
  afterAll(async () => {
    await h?.close();
  });

  const predictModel = async () => {
    const r = await post(base, '/v1/predict?topK=1', await png(), { 'content-type': 'image/png', ...bearer(predictor) });
    return r.status === 200 ? (r.json.model.id as string) : r.json.error.code;
  };
  const createJob = async (key: string) =>
    (await post(base, '/v1/jobs', JSON.stringify(tinySynthetic), { 'content-type': 'application/json', ...bearer(key) })).json.id as string;

  it("serves an admin's model on its own, never a newer model of a train key's job until an admin promotes it", async () => {
    const adminJob = await createJob(admin);
    const trainJob = await createJob(trainer);
    const a = await writeFixtureModel(h.settings.artifactsDir, 'by-admin', { seed: 1 });
    const t = await writeFixtureModel(h.settings.artifactsDir, 'by-trainer', { seed: 2 });
    await addModel(h, adminJob, a, new Date('2026-03-01'));
    await addModel(h, trainJob, t, new Date('2026-03-02')); // newer
    await h.app.serving.registry.refresh();
    expect(await predictModel()).toBe('by-admin');
    const list = await (await fetch(`${base}/v1/models`, { headers: bearer(predictor) })).json();
    expect(list.servingId).toBe('by-admin');

    const byTrainer = await post(base, '/v1/models/by-trainer/promote', '', bearer(trainer));
    expect(byTrainer.status).toBe(403);
    expect(byTrainer.json.error.code).toBe('SCOPE_MISSING');
    expect(await predictModel()).toBe('by-admin');

    const promoted = await post(base, '/v1/models/by-trainer/promote', '', bearer(admin));
    expect(promoted.status).toBe(200);
    expect(promoted.json.model).toMatchObject({ id: 'by-trainer', serving: true });
    expect(await predictModel()).toBe('by-trainer');
  });

  it('refuses to promote a model that does not load, and changes nothing', async () => {
    const job = await createJob(admin);
    const bad = await writeFixtureModel(h.settings.artifactsDir, 'broken', { seed: 3 });
    await addModel(h, job, bad, new Date('2026-01-01')); // older: it would not auto-serve anyway
    await writeFile(bad.onnxFile, Buffer.from('truncated'));
    const before = await predictModel();
    const r = await post(base, '/v1/models/broken/promote', '', bearer(admin));
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('MODEL_UNAVAILABLE');
    expect(r.json.error.message).toContain('sha256');
    expect(leaks(r.text)).toEqual([]);
    expect((await h.deps.db.prisma.model.findUniqueOrThrow({ where: { id: 'broken' } })).promotedAt).toBeNull();
    expect(await predictModel()).toBe(before);

    // A file that hashes right but is not a model: loaded and refused by onnxruntime, same outcome.
    const junkJob = await createJob(admin);
    const junk = await writeFixtureModel(h.settings.artifactsDir, 'junk', { seed: 4 });
    const bytes = Buffer.from('this is not an onnx model at all');
    await writeFile(junk.onnxFile, bytes);
    const { createHash } = await import('node:crypto');
    junk.record.sha256 = createHash('sha256').update(bytes).digest('hex');
    // Its manifest names the same file, so it is the file that fails, not the manifest.
    const junkManifest = JSON.parse(await readFile(junk.manifestFile, 'utf8'));
    await writeFile(junk.manifestFile, JSON.stringify({ ...junkManifest, sha256: junk.record.sha256, sizeBytes: bytes.length }));
    await addModel(h, junkJob, junk, new Date('2026-01-01'));
    const r2 = await post(base, '/v1/models/junk/promote', '', bearer(admin));
    expect(r2.status).toBe(503);
    expect(r2.json.error.message).toContain('onnxruntime cannot load it');
    expect(leaks(r2.text)).toEqual([]);
    expect(await predictModel()).toBe(before);
  });

  it('falls back at start-up to the last good model when the serving one is corrupt, and says so', async () => {
    const job = await createJob(admin);
    const newest = await writeFixtureModel(h.settings.artifactsDir, 'newest', { seed: 5 });
    await addModel(h, job, newest, new Date('2026-06-01'));
    await h.deps.db.prisma.model.updateMany({ data: { promotedAt: null } }); // newest auto-serving model should serve
    await writeFile(newest.onnxFile, Buffer.from('corrupted on disk'));
    // A second replica starting now, on the same database, with its log captured.
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        lines.push(...String(chunk).split('\n').filter(Boolean));
        done();
      },
    });
    const replica: FastifyInstance = await buildApp({ ...h.deps, logger: { level: 'warn', stream } });
    try {
      await replica.ready();
      const served = await replica.inject({
        method: 'POST',
        url: '/v1/predict',
        payload: await png(),
        headers: { 'content-type': 'image/png', ...bearer(predictor) },
      });
      expect(served.statusCode).toBe(200);
      expect(served.json().model.id).toBe('by-admin'); // the next good auto-serving model
      const anon = (await replica.inject({ method: 'GET', url: '/readyz' })).json();
      expect(anon.checks.model).toBe('fallback');
      expect(anon.reason).toBeUndefined();
      const detail = (await replica.inject({ method: 'GET', url: '/readyz', headers: bearer(admin) })).json();
      expect(detail.checks.model).toMatch(/^fallback: serving by-admin because newest cannot be loaded \(.*sha256.*\)$/);
      expect(leaks(JSON.stringify(detail))).toEqual([]);
      const state = replica.serving.registry.readiness();
      expect(state).toMatchObject({ state: 'fallback', servingId: 'by-admin', wantedId: 'newest' });
      const warned = lines.map((l) => JSON.parse(l)).filter((l) => l.msg?.includes('instead of newest'));
      expect(warned).toHaveLength(1);
      expect(warned[0].msg).toContain('serving by-admin (last good)');
    } finally {
      await replica.close();
    }
  });
});

describe('uploads', () => {
  let h: Harness;
  let base: string;
  beforeAll(async () => {
    h = await startHarness('sqlite', { MODEL_POLL_MS: '0', PREDICT_WORKERS: '1', PREDICT_MAX_QUEUE: '2' });
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const job = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinySynthetic });
    await addModel(h, job.json().id, await writeFixtureModel(h.settings.artifactsDir, 'm', { seed: 1 }), new Date());
    await h.app.serving.registry.refresh();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('admits a 12 MP photo and refuses more than 4096 x 4096 pixels before decoding', async () => {
    const photo = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#5a8' } })
      .jpeg()
      .toBuffer();
    expect((await post(base, '/v1/predict', photo, { 'content-type': 'image/jpeg' })).status).toBe(200);
    const huge = await sharp({ create: { width: 5000, height: 4000, channels: 3, background: '#5a8' } })
      .png()
      .toBuffer();
    const r = await post(base, '/v1/predict', huge, { 'content-type': 'image/png' });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('IMAGE_TOO_LARGE');
    expect(r.json.error.message).toContain('5000x4000');
    expect(r.json.error.message).toContain('16777216');
  });

  it("admits a camera's 24 and 48 MP JPEGs, which decode at 1/8 scale, but not the same pixels held whole", async () => {
    const scene = (w: number, h: number) => sharp({ create: { width: w, height: h, channels: 3, background: '#5a8' } });
    for (const [w, h] of [
      [6000, 4000], // 24 MP: an APS-C camera, an iPhone's "Most Compatible" JPEG
      [8064, 6048], // 48.8 MP: a phone's full-resolution mode
    ]) {
      const r = await post(base, '/v1/predict', await scene(w, h).jpeg().toBuffer(), { 'content-type': 'image/jpeg' });
      expect([r.status, r.json.predictions?.length], `${w}x${h}`).toEqual([200, 5]);
    }
    // A progressive JPEG keeps every coefficient of the whole image (1.2 s and 142 MiB at 48.8 MP).
    const progressive = await post(base, '/v1/predict', await scene(6000, 4000).jpeg({ progressive: true }).toBuffer(), { 'content-type': 'image/jpeg' });
    expect([progressive.status, progressive.json.error.code]).toEqual([400, 'IMAGE_TOO_LARGE']);
    expect(progressive.json.error.message).toBe('the image is 6000x4000 (24000000 pixels); the limit is 16777216 pixels decoded');
    // Past libvips' own limit nothing is decoded: too large, not "corrupt".
    const giant = await post(base, '/v1/predict', await jpegWithClaimedSize(20_000, 15_000), { 'content-type': 'image/jpeg' });
    expect([giant.status, giant.json.error]).toMatchObject([
      400,
      { code: 'IMAGE_TOO_LARGE', message: 'the image is 20000x15000 (300000000 pixels); no image over 268402689 pixels is decoded' },
    ]);
  });

  it('answers 415 IMAGE_TYPE_MISMATCH when the declared type is not what the bytes are, on every upload path', async () => {
    const jpeg = await makeImage('jpeg');
    const pngBytes = await makeImage('png');
    const raw = await post(base, '/v1/predict', pngBytes, { 'content-type': 'image/jpeg' });
    expect(raw.status).toBe(415);
    expect(raw.json.error.code).toBe('IMAGE_TYPE_MISMATCH');
    expect(raw.json.error.message).toContain('send it as image/png');
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(jpeg)], { type: 'image/png' }), 'photo.png');
    expect((await post(base, '/v1/predict', form, {})).json.error.code).toBe('IMAGE_TYPE_MISMATCH');
    const dataUrl = JSON.stringify({ image: `data:image/webp;base64,${jpeg.toString('base64')}` });
    expect((await post(base, '/v1/predict', dataUrl, { 'content-type': 'application/json' })).json.error.code).toBe('IMAGE_TYPE_MISMATCH');
    // Declaring nothing (octet-stream part, bare base64) or the right type is fine.
    const ok = new FormData();
    ok.append('image', new Blob([new Uint8Array(jpeg)]), 'photo');
    expect((await post(base, '/v1/predict', ok, {})).status).toBe(200);
    expect((await post(base, '/predict', JSON.stringify({ image: jpeg.toString('base64') }), { 'content-type': 'application/json' })).status).toBe(200);
    expect((await post(base, '/predict', jpeg, { 'content-type': 'image/jpeg' })).status).toBe(200);
  });

  it('a batch takes a place in the predictor queue per image: at most PREDICT_MAX_QUEUE images, all admitted or none', async () => {
    const jpeg = await makeImage('jpeg');
    const form = (n: number, type = 'image/jpeg') => {
      const f = new FormData();
      for (let i = 0; i < n; i++) f.append('image', new Blob([new Uint8Array(jpeg)], { type }), `${i}.jpg`);
      return f;
    };
    const three = await post(base, '/v1/predict/batch', form(3), {});
    expect([three.status, three.json.error.code]).toEqual([400, 'TOO_MANY_IMAGES']);
    expect(three.json.error.message).toContain('at most 2 per request');
    // A declared type that is not the bytes' is that image's error, as on /v1/predict.
    const mismatch = await post(base, '/v1/predict/batch', form(1, 'image/png'), {});
    expect(mismatch.json.results[0].error.code).toBe('IMAGE_TYPE_MISMATCH');
    const photo = await makeImage('png', 1600, 1200);
    const photos = () => {
      const f = new FormData();
      for (let i = 0; i < 2; i++) f.append('image', new Blob([new Uint8Array(photo)], { type: 'image/png' }), `${i}.png`);
      return f;
    };
    const results = await Promise.all(Array.from({ length: 8 }, () => post(base, '/v1/predict/batch', photos(), {})));
    const codes = results.map((r) => r.status);
    expect(codes.filter((c) => c !== 200 && c !== 503)).toEqual([]);
    expect(codes.filter((c) => c === 200).length).toBeGreaterThanOrEqual(1);
    expect(codes.filter((c) => c === 503).length).toBeGreaterThan(0);
    for (const r of results) {
      if (r.status === 503) expect([r.json.error.code, r.headers.get('retry-after')]).toEqual(['PREDICT_OVERLOADED', '1']);
      else expect(r.json.results.map((x: { predictions?: unknown[] }) => x.predictions?.length)).toEqual([5, 5]);
    }
    expect(h.app.serving.pending()).toBe(0);
  });

  it('refuses predictions over PREDICT_MAX_QUEUE at once with 503 + Retry-After, and answers the rest', async () => {
    const photo = await makeImage('png', 1600, 1200);
    const results = await Promise.all(Array.from({ length: 24 }, () => post(base, '/v1/predict', photo, { 'content-type': 'image/png' })));
    const codes = results.map((r) => r.status);
    expect(
      codes.filter((c) => c !== 200 && c !== 503),
      JSON.stringify(results.map((r) => r.text.slice(0, 80))),
    ).toEqual([]);
    const refused = results.filter((r) => r.status === 503);
    expect(codes.filter((c) => c === 200).length).toBeGreaterThanOrEqual(2);
    expect(refused.length).toBeGreaterThan(0);
    expect(codes.every((c) => c === 200 || c === 503)).toBe(true);
    for (const r of refused) {
      expect(r.json.error.code).toBe('PREDICT_OVERLOADED');
      expect(r.headers.get('retry-after')).toBe('1');
    }
    expect(h.app.serving.pending()).toBe(0);
  });
});
