// /v1/predict and /v1/models against a running server (real HTTP on a free port, real images).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorsPlugin } from '../../src/api/plugins/errors.js';
import { metricsPlugin } from '../../src/api/plugins/metrics.js';
import { PredictBatchResponse, PredictLimits, PredictResponse, predictRoutes } from '../../src/api/routes/predict.js';
import { ModelDetail, ModelEvaluationResponse, ModelList, modelsRoutes } from '../../src/api/routes/models.js';
import { servingPlugin } from '../../src/serving/plugin.js';
import { EvaluationAccumulator } from '../../src/export/export-job-evaluate.js';
import { ServingService, type ServingOptions } from '../../src/serving/prediction-service.js';
import { modelFilesIn } from '../../src/serving/model-store.js';
import { MemoryModelStore } from '../../testkit/memory-model-store.js';
import { makeImage, writeFixtureModel, type FixtureModel } from './fixtures.js';
import { problemImages } from './bad-images.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (r: Response): Promise<any> => r.json();

/** A copy on a plain ArrayBuffer (what fetch and Blob are typed to take). */
const bytes = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);

let root: string;
let a: FixtureModel;
let b: FixtureModel;

async function startServer(
  store: MemoryModelStore,
  maxImageBytes = 200_000,
  more: Partial<ServingOptions> = {},
): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ logger: false });
  // A 10 ms window: 32 concurrent requests coincide in it even on a loaded machine (2 ms did not, once).
  const serving = new ServingService({ store, size: 2, batchWindowMs: 10, maxBatch: 8, pollMs: 0, maxImageBytes, maxImagePixels: 4_000_000, ...more });
  await app.register(errorsPlugin);
  await app.register(servingPlugin, { service: serving });
  await app.register(predictRoutes);
  await app.register(modelsRoutes);
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url: address };
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'qatserve-routes-'));
  a = await writeFixtureModel(root, 'a', { seed: 1, createdAt: new Date('2026-01-01'), classes: 5 });
  b = await writeFixtureModel(root, 'b', { seed: 2, createdAt: new Date('2026-01-02'), classes: 5 });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('POST /v1/predict', () => {
  let app: FastifyInstance;
  let url: string;
  let store: MemoryModelStore;

  beforeAll(async () => {
    store = new MemoryModelStore(modelFilesIn(root));
    store.add(a.record);
    store.add(b.record);
    ({ app, url } = await startServer(store));
  });
  afterAll(async () => {
    await app.close();
  });

  const post = (body: Buffer | Uint8Array | string | FormData, headers: Record<string, string> = {}, query = '') =>
    fetch(`${url}/v1/predict${query}`, { method: 'POST', body: typeof body === 'string' || body instanceof FormData ? body : bytes(body), headers });

  it('accepts a multipart file, a raw image body and base64 JSON, with the same answer', async () => {
    const jpeg = await makeImage('jpeg', 80, 60);
    const form = new FormData();
    form.append('image', new Blob([bytes(jpeg)], { type: 'image/jpeg' }), 'photo.jpg');
    const viaForm = await post(form);
    const viaRaw = await post(jpeg, { 'content-type': 'image/jpeg' });
    const viaJson = await post(JSON.stringify({ image: jpeg.toString('base64') }), { 'content-type': 'application/json' });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const bodies: any[] = [];
    for (const res of [viaForm, viaRaw, viaJson]) {
      expect(res.status).toBe(200);
      bodies.push(await json(res));
    }
    const first = bodies[0];
    PredictResponse.parse(first); // the documented shape
    expect(first.model).toEqual({ id: 'b', jobId: 'job-b' });
    expect(first.predictions).toHaveLength(5);
    const total = first.predictions.reduce((s: number, p: { probability: number }) => s + p.probability, 0);
    expect(total).toBeCloseTo(1, 5);
    for (let i = 1; i < 5; i++) expect(first.predictions[i].probability).toBeLessThanOrEqual(first.predictions[i - 1].probability);
    expect(first.predictions[0].label).toBe(`b-label-${first.predictions[0].index}`);
    expect(first.timings.decodeMs).toBeGreaterThanOrEqual(0);
    expect(first.timings.inferMs).toBeGreaterThan(0);
    for (const other of bodies.slice(1)) expect(other.predictions).toEqual(first.predictions);
  });

  it('honours ?topK= and ?model=, and validates them', async () => {
    const png = await makeImage('png', 50, 50);
    const res = await post(png, { 'content-type': 'image/png' }, '?topK=2&model=a');
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.model.id).toBe('a');
    expect(body.predictions).toHaveLength(2);
    const bad = await post(png, { 'content-type': 'image/png' }, '?topK=0');
    expect(bad.status).toBe(400);
    expect((await json(bad)).error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ path: 'query.topK' }] });
    const missing = await post(png, { 'content-type': 'image/png' }, '?model=nope');
    expect(missing.status).toBe(404);
    expect((await json(missing)).error.code).toBe('MODEL_NOT_FOUND');
  });

  it('answers every bad image with a clear code and keeps serving', async () => {
    const imgs = await problemImages();
    const cases: Array<[keyof typeof imgs, number, string]> = [
      ['empty', 400, 'IMAGE_EMPTY'],
      ['notAnImage', 415, 'IMAGE_UNSUPPORTED_FORMAT'],
      ['svg', 415, 'IMAGE_UNSUPPORTED_FORMAT'],
      ['truncated', 400, 'IMAGE_CORRUPT'],
      ['animated', 400, 'IMAGE_ANIMATED'],
      ['huge', 400, 'IMAGE_TOO_LARGE'],
      ['sliver', 400, 'IMAGE_SHAPE_UNSUPPORTED'],
      ['heic', 415, 'IMAGE_UNSUPPORTED_FORMAT'],
    ];
    for (const [name, status, code] of cases) {
      const form = new FormData();
      form.append('image', new Blob([bytes(imgs[name])]), name);
      const res = await post(form);
      expect(res.status, name).toBe(status);
      const body = await json(res);
      expect(body.error.code, name).toBe(code);
      expect(body.error.message.length, name).toBeGreaterThan(10);
    }
    // An iPhone photo is not "corrupt": the answer says what it is and what to send.
    const heic = new FormData();
    heic.append('image', new Blob([bytes(imgs.heic)], { type: 'image/heic' }), 'IMG_0001.HEIC');
    expect((await json(await post(heic))).error.message).toBe(
      'the image is HEIC (HEVC-coded, as iPhones save photos), which this server cannot decode; convert it to JPEG (on an iPhone: Settings > Camera > Formats > Most Compatible)',
    );
    // Converted, not rejected.
    for (const name of ['grey', 'alpha', 'sixteenBit', 'cmyk'] as const) {
      const form = new FormData();
      form.append('image', new Blob([bytes(imgs[name])]), name);
      const res = await post(form);
      expect(res.status, name).toBe(200);
      expect((await json(res)).predictions, name).toHaveLength(5);
    }
    // Raw bodies of the wrong media type, empty raw bodies and bad base64. curl --data-binary
    // without -H sends application/x-www-form-urlencoded: the answer says what to send instead.
    const jpeg = await makeImage('jpeg', 60, 60);
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', '']) {
      const res = await post(type ? jpeg : new Uint8Array(jpeg), type ? { 'content-type': type } : {});
      expect([res.status, (await json(res)).error], type).toMatchObject([
        415,
        {
          code: 'UNSUPPORTED_MEDIA_TYPE',
          message: `content type "${type || 'none'}" is not accepted; send multipart/form-data (field "image"), the raw image as image/jpeg, image/png, image/webp (or application/octet-stream), or application/json {"image": "<base64>"}`,
        },
      ]);
    }
    // A raw body declaring nothing, or the type of a format the decoder reads, is an image.
    const gif = await sharp(jpeg).gif().toBuffer();
    for (const [body, type] of [
      [jpeg, 'application/octet-stream'],
      [gif, 'image/gif'],
      [gif, 'application/octet-stream'],
    ] as const) {
      const res = await post(body, { 'content-type': type });
      expect([res.status, (await json(res)).predictions?.length], type).toEqual([200, 5]);
    }
    const emptyRaw = await post(new Uint8Array(0), { 'content-type': 'image/jpeg' });
    expect(emptyRaw.status).toBe(400);
    expect((await json(emptyRaw)).error.code).toBe('IMAGE_EMPTY');
    const b64 = await post(JSON.stringify({ image: '%%% not base64 %%%' }), { 'content-type': 'application/json' });
    expect(b64.status).toBe(400);
    expect((await json(b64)).error.code).toBe('IMAGE_BASE64_INVALID');
    const wrongField = new FormData();
    wrongField.append('file', new Blob([bytes(await makeImage('png'))]), 'x.png');
    const wf = await post(wrongField);
    expect(wf.status).toBe(400);
    expect((await json(wf)).error.code).toBe('IMAGE_MISSING');
    // Malformed multipart bodies: no boundary, nothing but garbage, a part cut off.
    const part = '--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\nABCDEF';
    for (const [type, body] of [
      ['multipart/form-data', 'abc'],
      ['multipart/form-data; boundary=xyz', 'garbage'],
      ['multipart/form-data; boundary=xyz', part],
    ]) {
      const res = await post(body, { 'content-type': type });
      expect([res.status, (await json(res)).error.code], body).toEqual([400, 'MULTIPART_INVALID']);
    }
    // Two images in one request: which one to answer for is ambiguous. Too many fields likewise.
    const png = new Blob([bytes(await makeImage('png'))], { type: 'image/png' });
    const two = new FormData();
    two.append('image', png, 'a.png');
    two.append('image', png, 'b.png');
    const fields = new FormData();
    for (let i = 0; i < 11; i++) fields.append(`f${i}`, 'x');
    fields.append('image', png, 'a.png');
    for (const [form, message] of [
      [two, 'the multipart body holds more than one file: send one image per request, or several to POST /v1/predict/batch'],
      [fields, 'the multipart body holds more than 10 fields besides the file "image"'],
    ] as const) {
      const res = await post(form);
      expect([res.status, (await json(res)).error], message).toMatchObject([400, { code: 'MULTIPART_INVALID', message }]);
    }
    const withFields = new FormData();
    withFields.append('note', 'a form field beside the file is fine');
    withFields.append('image', png, 'a.png');
    expect((await post(withFields)).status).toBe(200);
    // Still serving.
    const ok = await post(await makeImage('webp'), { 'content-type': 'image/webp' });
    expect(ok.status).toBe(200);
  });

  it('answers 413 for uploads over the limit, in every encoding', async () => {
    const big = Buffer.alloc(300_000, 7);
    const raw = await post(big, { 'content-type': 'image/jpeg' });
    expect(raw.status).toBe(413);
    expect((await json(raw)).error.code).toBe('BODY_TOO_LARGE');
    const form = new FormData();
    form.append('image', new Blob([bytes(big)]), 'big.jpg');
    const multi = await post(form);
    expect(multi.status).toBe(413);
    expect((await json(multi)).error).toMatchObject({ code: 'BODY_TOO_LARGE', message: 'the image is larger than the limit of 200000 bytes' });
    const viaJson = await post(JSON.stringify({ image: big.toString('base64') }), { 'content-type': 'application/json' });
    expect(viaJson.status).toBe(413);
    expect((await json(viaJson)).error.code).toBe('BODY_TOO_LARGE');
  });

  it('serves concurrent requests (micro-batched) without errors', async () => {
    const jpeg = await makeImage('jpeg', 64, 64);
    const res = await Promise.all(Array.from({ length: 32 }, () => post(jpeg, { 'content-type': 'image/jpeg' })));
    const bodies = (await Promise.all(res.map((r) => json(r)))) as Array<{ timings: { batchSize: number } }>;
    expect(res.every((r) => r.status === 200)).toBe(true);
    expect(Math.max(...bodies.map((x) => x.timings.batchSize))).toBeGreaterThan(1);
  });

  it('answers a JPEG while AVIF uploads are decoded, as they take turns', async () => {
    // A 3 MP AVIF takes ~0.3 s to decode (a 16.8 MP one 2 s and 300 MiB). Four at once used to
    // fill the four threads sharp decodes on, and the JPEG waited for them.
    const avif = await sharp(randomBytes(100 * 75 * 3), { raw: { width: 100, height: 75, channels: 3 } })
      .resize(2000, 1500)
      .avif({ quality: 50, effort: 0 })
      .toBuffer();
    const jpeg = await makeImage('jpeg', 640, 480);
    const answered: string[] = [];
    const send = (name: string, body: Buffer, type: string) =>
      post(body, { 'content-type': type }).then(async (r) => {
        answered.push(name);
        return { status: r.status, timings: (await json(r)).timings as { decodeMs: number; queueMs: number } };
      });
    const avifs = Array.from({ length: 4 }, (_, i) => send(`avif${i}`, avif, 'image/avif'));
    const results = await Promise.all([...avifs, send('jpeg', jpeg, 'image/jpeg')]);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(answered[0]).toBe('jpeg');
    // An AVIF's wait for its turn is reported as queueing, not as decoding: together the waits
    // (about 0 + 1 + 2 + 3 decodes) are longer than any one decode.
    const timings = results.slice(0, 4).map((r) => r.timings);
    expect(timings.reduce((sum, t) => sum + t.queueMs, 0)).toBeGreaterThan(Math.max(...timings.map((t) => t.decodeMs)));
  });
});

describe('POST /v1/predict/batch', () => {
  let app: FastifyInstance;
  let url: string;

  beforeAll(async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    store.add(a.record);
    store.add(b.record);
    ({ app, url } = await startServer(store, 200_000, { maxImagesPerRequest: 4 }));
  });
  afterAll(async () => {
    await app.close();
  });

  const post = (path: string, body: string | FormData | Uint8Array, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'POST', body: body instanceof Uint8Array ? bytes(body) : body, headers });
  const asJson = { 'content-type': 'application/json' };

  it("answers a folder's images in order with one model, as /v1/predict would one by one; an unreadable image gets its error in its place", async () => {
    const imgs = await problemImages();
    const files: Array<[string, Buffer, string]> = [
      ['cat.jpg', await makeImage('jpeg', 80, 60, 1), 'image/jpeg'],
      ['cut.jpg', imgs.truncated, 'image/jpeg'],
      ['dog.png', await makeImage('png', 50, 70, 2), 'image/png'],
      ['bird.webp', await makeImage('webp', 64, 64, 3), 'image/webp'],
    ];
    const form = new FormData();
    for (const [name, data, type] of files) form.append('image', new Blob([bytes(data)], { type }), name);
    const res = await post('/v1/predict/batch?topK=3', form);
    expect(res.status).toBe(200);
    const body = await json(res);
    PredictBatchResponse.parse(body); // the documented shape
    expect(body.model).toEqual({ id: 'b', jobId: 'job-b' });
    expect(body.results.map((r: { index: number; filename: string }) => [r.index, r.filename])).toEqual(files.map(([name], i) => [i, name]));
    expect(body.results[1].error.code).toBe('IMAGE_CORRUPT');
    expect(body.results[1].predictions).toBeUndefined();
    for (const i of [0, 2, 3]) {
      const one = await json(await post('/v1/predict?topK=3', files[i][1], { 'content-type': files[i][2] }));
      expect(body.results[i].predictions, files[i][0]).toEqual(one.predictions);
      expect(body.results[i].predictions).toHaveLength(3);
    }
    // The same images as base64 JSON, one entry not base64, and ?model=.
    const images = files.map(([, data]) => data.toString('base64'));
    images[3] = '%%% not base64 %%%';
    const viaJson = await json(await post('/v1/predict/batch?topK=3&model=a', JSON.stringify({ images }), asJson));
    expect(viaJson.model.id).toBe('a');
    expect(viaJson.results.map((r: { error?: { code: string } }) => r.error?.code ?? 'ok')).toEqual(['ok', 'IMAGE_CORRUPT', 'ok', 'IMAGE_BASE64_INVALID']);
    const one = await json(await post('/v1/predict?topK=3&model=a', files[2][1], { 'content-type': 'image/png' }));
    expect(viaJson.results[2].predictions).toEqual(one.predictions);
    // Nothing readable: every error, and no model was asked.
    const none = await json(await post('/v1/predict/batch', JSON.stringify({ images: ['%%%', imgs.notAnImage.toString('base64')] }), asJson));
    expect(none).toMatchObject({
      model: null,
      results: [
        { index: 0, error: { code: 'IMAGE_BASE64_INVALID' } },
        { index: 1, error: { code: 'IMAGE_UNSUPPORTED_FORMAT' } },
      ],
    });
  });

  it('GET /v1/predict/limits tells a client the limits a batch must keep, and a batch packed to them is taken whole', async () => {
    const limits = PredictLimits.parse(await json(await fetch(`${url}/v1/predict/limits`)));
    expect(limits).toEqual({
      maxImagesPerRequest: 4,
      maxBytesPerRequest: 200_000,
      maxImagePixels: 4_000_000,
      mediaTypes: expect.arrayContaining(['image/jpeg', 'image/png']),
    });
    // Images of 60 KB each: as many as both limits allow (3), then one over the byte limit (4).
    const chunk = await sharp(randomBytes(150 * 150 * 3), { raw: { width: 150, height: 150, channels: 3 } })
      .jpeg({ quality: 100 })
      .toBuffer();
    const fit = Math.min(limits.maxImagesPerRequest, Math.floor(limits.maxBytesPerRequest / chunk.length));
    expect(fit).toBeGreaterThan(1);
    const send = (n: number) => {
      const form = new FormData();
      for (let i = 0; i < n; i++) form.append('image', new Blob([bytes(chunk)], { type: 'image/jpeg' }), `${i}.jpg`);
      return post('/v1/predict/batch', form);
    };
    const packed = await send(fit);
    expect(packed.status).toBe(200);
    expect((await json(packed)).results.map((r: { predictions?: unknown[] }) => r.predictions?.length)).toEqual(Array(fit).fill(5));
    expect((await send(fit + 1)).status).toBe(fit < limits.maxImagesPerRequest ? 413 : 400);
  });

  it('refuses a request it cannot answer whole, with a code saying why, and keeps serving', async () => {
    const png = await makeImage('png', 40, 40);
    const five = new FormData();
    for (let i = 0; i < 5; i++) five.append('image', new Blob([bytes(png)], { type: 'image/png' }), `${i}.png`);
    const fiveJson = JSON.stringify({ images: Array.from({ length: 5 }, () => png.toString('base64')) });
    const message = 'the request holds more than 4 images; send at most 4 per request (PREDICT_MAX_IMAGES_PER_REQUEST)';
    for (const [body, headers] of [
      [five, {}],
      [fiveJson, asJson],
    ] as const) {
      const res = await post('/v1/predict/batch', body, headers);
      expect([res.status, (await json(res)).error]).toMatchObject([400, { code: 'TOO_MANY_IMAGES', message }]);
    }
    // Each image under the limit, together over it (4 x 60 KB against 200 KB).
    const chunk = Buffer.alloc(60_000, 7);
    const heavy = new FormData();
    for (let i = 0; i < 4; i++) heavy.append('image', new Blob([bytes(chunk)]), `${i}.jpg`);
    const heavyJson = JSON.stringify({ images: Array.from({ length: 4 }, () => chunk.toString('base64')) });
    const overTogether = await post('/v1/predict/batch', heavy);
    expect([overTogether.status, (await json(overTogether)).error]).toMatchObject([
      413,
      { code: 'BODY_TOO_LARGE', message: 'the images are larger than the limit of 200000 bytes together; send fewer per request' },
    ]);
    const overAsJson = await post('/v1/predict/batch', heavyJson, asJson);
    expect([overAsJson.status, (await json(overAsJson)).error.code]).toEqual([413, 'BODY_TOO_LARGE']);
    const fieldsOnly = new FormData();
    fieldsOnly.append('note', 'no file');
    const cases: Array<[string | FormData | Uint8Array, Record<string, string>, number, string]> = [
      [fieldsOnly, {}, 400, 'IMAGE_MISSING'],
      [JSON.stringify({ images: [] }), asJson, 400, 'VALIDATION_FAILED'],
      [JSON.stringify({ image: png.toString('base64') }), asJson, 400, 'VALIDATION_FAILED'],
      [png, { 'content-type': 'image/png' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['hello', { 'content-type': 'text/plain' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ];
    for (const [i, [body, headers, status, code]] of cases.entries()) {
      const res = await post('/v1/predict/batch', body, headers);
      expect([res.status, (await json(res)).error.code], `case ${i}`).toEqual([status, code]);
    }
    const missing = await post('/v1/predict/batch?model=nope', JSON.stringify({ images: [png.toString('base64')] }), asJson);
    expect([missing.status, (await json(missing)).error.code]).toEqual([404, 'MODEL_NOT_FOUND']);
    const four = new FormData();
    for (let i = 0; i < 4; i++) four.append('image', new Blob([bytes(png)], { type: 'image/png' }), `${i}.png`);
    const ok = await post('/v1/predict/batch', four);
    expect(ok.status).toBe(200);
    expect((await json(ok)).results).toHaveLength(4);
    expect(app.serving.pending()).toBe(0);
  });
});

describe('prediction metrics', () => {
  it("counts images by outcome, times each answered one's stages, and names the model serving, on /metrics", async () => {
    const store = new MemoryModelStore(modelFilesIn(root));
    const app = Fastify({ logger: false });
    const serving = new ServingService({ store, size: 1, batchWindowMs: 10, maxBatch: 8, pollMs: 0, maxImageBytes: 200_000 });
    await app.register(errorsPlugin);
    await app.register(servingPlugin, { service: serving });
    await app.register(metricsPlugin, { sources: { queueCounts: async () => ({}), jobsByStatus: async () => ({}), serving } });
    await app.register(predictRoutes);
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const metrics = async () => (await fetch(`${url}/metrics`)).text();
      const sample = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}()[\]|.+*?^$\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
      const jpeg = await makeImage('jpeg', 80, 60, 1);
      const asJson = { 'content-type': 'application/json' };

      // No model yet: the replica says so, and a prediction is counted as refused.
      expect(sample(await metrics(), 'qatserve_serving_model_info{model_id="",job_id="",state="none"}')).toBe(1);
      expect((await fetch(`${url}/v1/predict`, { method: 'POST', body: bytes(jpeg), headers: { 'content-type': 'image/jpeg' } })).status).toBe(503);

      store.add(a.record);
      await serving.registry.refresh();
      expect((await fetch(`${url}/v1/predict`, { method: 'POST', body: bytes(jpeg), headers: { 'content-type': 'image/jpeg' } })).status).toBe(200);
      // A batch: two answered, one corrupt, one the request could not carry (not base64).
      const imgs = await problemImages();
      const images = [jpeg, imgs.truncated, await makeImage('png', 50, 70, 2)].map((b) => b.toString('base64'));
      const batch = await fetch(`${url}/v1/predict/batch`, { method: 'POST', body: JSON.stringify({ images: [...images, '%%%'] }), headers: asJson });
      expect(batch.status).toBe(200);

      const text = await metrics();
      expect(sample(text, 'qatserve_serving_model_info{model_id="a",job_id="job-a",state="ok"}')).toBe(1);
      expect(text).not.toContain('state="none"');
      expect(['ok', 'NO_MODEL', 'IMAGE_CORRUPT', 'IMAGE_BASE64_INVALID'].map((o) => sample(text, `qatserve_predict_images_total{outcome="${o}"}`))).toEqual([
        3, 1, 1, 1,
      ]);
      for (const stage of ['decode', 'queue', 'inference']) {
        expect(sample(text, `qatserve_predict_stage_seconds_count{stage="${stage}"}`), stage).toBe(3);
        expect(sample(text, `qatserve_predict_stage_seconds_sum{stage="${stage}"}`), stage).toBeGreaterThanOrEqual(0);
      }
      expect(sample(text, 'qatserve_predict_stage_seconds_sum{stage="inference"}')).toBeGreaterThan(0);
      expect(sample(text, 'qatserve_predict_batch_size_count')).toBe(3);
      expect(sample(text, 'qatserve_predict_in_flight')).toBe(0);
    } finally {
      await app.close();
    }
  });
});

describe('/v1/models', () => {
  let app: FastifyInstance;
  let url: string;
  let store: MemoryModelStore;

  beforeAll(async () => {
    store = new MemoryModelStore(modelFilesIn(root));
    ({ app, url } = await startServer(store));
  });
  afterAll(async () => {
    await app.close();
  });

  it('503 NO_MODEL on predict before any model exists; lists, shows, downloads and promotes after', async () => {
    const png = await makeImage('png');
    // Not an image is the client's fault whatever the service holds: 415, not 503 "try again later".
    const noise = await fetch(`${url}/v1/predict`, { method: 'POST', body: bytes(randomBytes(40_000)), headers: { 'content-type': 'image/png' } });
    expect(noise.status).toBe(415);
    expect((await json(noise)).error.code).toBe('IMAGE_UNSUPPORTED_FORMAT');
    const none = await fetch(`${url}/v1/predict`, { method: 'POST', body: bytes(png), headers: { 'content-type': 'image/png' } });
    expect(none.status).toBe(503);
    expect((await json(none)).error.code).toBe('NO_MODEL');
    expect((await json(await fetch(`${url}/v1/models`))).items).toEqual([]);

    store.add(a.record);
    store.add(b.record);
    const list = await json(await fetch(`${url}/v1/models`));
    expect(list.items.map((m: { id: string }) => m.id)).toEqual(['b', 'a']);
    expect(list.servingId).toBe('b');
    ModelList.parse(list);
    expect(list.items[0]).toMatchObject({ serving: true, jobId: 'job-b', inputSize: 32, sha256: b.record.sha256 });

    const one = await json(await fetch(`${url}/v1/models/a`));
    ModelDetail.parse(one);
    expect(one.manifest).toMatchObject({ jobId: 'job-a', classes: a.graph.classes, input: { size: 32, layout: 'NCHW' } });
    const missing = await fetch(`${url}/v1/models/zzz`);
    expect(missing.status).toBe(404);
    expect((await json(missing)).error.code).toBe('MODEL_NOT_FOUND');

    const dl = await fetch(`${url}/v1/models/a/download`);
    expect(dl.status).toBe(200);
    const downloaded = Buffer.from(await dl.arrayBuffer());
    expect(downloaded.equals(await readFile(a.onnxFile))).toBe(true);
    expect(createHash('sha256').update(downloaded).digest('hex')).toBe(dl.headers.get('x-model-sha256'));

    const promoted = await fetch(`${url}/v1/models/a/promote`, { method: 'POST' });
    expect(promoted.status).toBe(200);
    expect((await json(promoted)).model).toMatchObject({ id: 'a', serving: true });
    const pred = await json(await fetch(`${url}/v1/predict`, { method: 'POST', body: bytes(png), headers: { 'content-type': 'image/png' } }));
    expect(pred.model.id).toBe('a');
    const nf = await fetch(`${url}/v1/models/zzz/promote`, { method: 'POST' });
    expect(nf.status).toBe(404);
  });

  it("GET /v1/models/:id/evaluation: the manifest's evaluation, null when it has none; a malformed one is MODEL_MANIFEST_INVALID", async () => {
    store.add(a.record);
    const none = await json(await fetch(`${url}/v1/models/a/evaluation`));
    expect(ModelEvaluationResponse.parse(none)).toEqual({ modelId: 'a', classes: a.graph.classes, evaluation: null });

    const c = await writeFixtureModel(root, 'c', { seed: 3, classes: 3 });
    const evaluation = {
      images: 30,
      top1: 0.7,
      top5: 1,
      perClassTop1: [0.9, null, 0.6],
      confusion: [
        [9, 1, 0],
        [2, 6, 2],
        [0, 4, 6],
      ],
    };
    const manifest = JSON.parse(await readFile(c.manifestFile, 'utf8'));
    await writeFile(c.manifestFile, JSON.stringify({ ...manifest, evaluation }));
    store.add(c.record);
    // Written before manifests had perClassImages and topConfusions: answered in today's shape.
    const got = ModelEvaluationResponse.parse(await json(await fetch(`${url}/v1/models/c/evaluation`)));
    expect(got).toEqual({
      modelId: 'c',
      classes: c.graph.classes,
      evaluation: {
        ...evaluation,
        perClassImages: [10, 10, 10],
        topConfusions: [
          { actual: 2, predicted: 1, count: 4 },
          { actual: 1, predicted: 0, count: 2 },
          { actual: 1, predicted: 2, count: 2 },
          { actual: 0, predicted: 1, count: 1 },
        ],
      },
    });

    // A hand-edited or foreign manifest is refused as a whole, with a code and the field at fault.
    const d = await writeFixtureModel(root, 'd', { seed: 4, classes: 3 });
    const dManifest = JSON.parse(await readFile(d.manifestFile, 'utf8'));
    await writeFile(d.manifestFile, JSON.stringify({ ...dManifest, evaluation: { ...evaluation, confusion: [[1]] } }));
    store.add(d.record);
    for (const route of ['/v1/models/d/evaluation', '/v1/models/d']) {
      const res = await fetch(`${url}${route}`);
      expect(res.status, route).toBe(503);
      const { error } = await json(res);
      expect(error.code).toBe('MODEL_MANIFEST_INVALID');
      expect(error.message).toMatch(/evaluation: perClassTop1, perClassImages and confusion must have one entry per class \(3\)/);
    }
    expect((await fetch(`${url}/v1/models/zzz/evaluation`)).status).toBe(404);
  });
  it('a 1,000-class model serves, and its evaluation answers per class and the most frequent mistakes', async () => {
    // 10 validation images a class: 6 right, 2 answered as the next class, 2 as one of the others.
    const k = 1000;
    const acc = new EvaluationAccumulator(k);
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    for (let c = 0; c < k; c++) {
      const logits = new Float32Array(10 * k);
      for (let r = 0; r < 10; r++) logits[r * k + (r < 6 ? c : r < 8 ? (c + 1) % k : (c + 2 + rand(k - 2)) % k)] = 1;
      acc.add(logits, new Int32Array(10).fill(c));
    }
    const e = acc.result();
    const big = await writeFixtureModel(root, 'k1000', { seed: 5, classes: k, evaluation: e });
    // Its classes² dense matrix made an 11 MB manifest that no server would read (ARTIFACT_CORRUPT).
    expect((await readFile(big.manifestFile)).length).toBeLessThan(512 * 1024);
    store.add(big.record);

    const pred = await fetch(`${url}/v1/predict?model=k1000&topK=3`, {
      method: 'POST',
      body: bytes(await makeImage('png')),
      headers: { 'content-type': 'image/png' },
    });
    expect(pred.status).toBe(200);
    expect(PredictResponse.parse(await json(pred)).predictions).toHaveLength(3);
    expect((await fetch(`${url}/v1/models/k1000`)).status).toBe(200);

    const got = ModelEvaluationResponse.parse(await json(await fetch(`${url}/v1/models/k1000/evaluation`)));
    expect(got.classes).toHaveLength(k);
    const ev = got.evaluation!;
    expect(ev).toMatchObject({ images: 10 * k, confusion: null });
    expect(ev.top1).toBeCloseTo(0.6, 2);
    expect(ev.perClassImages).toEqual(new Array(k).fill(10));
    expect(ev.perClassTop1.every((v) => v !== null && v >= 0.6)).toBe(true);
    // The 100 largest mistakes: each class's 2 images answered as the next class come first.
    expect(ev.topConfusions).toHaveLength(100);
    expect(ev.topConfusions[0]).toEqual({ actual: 0, predicted: 1, count: 2 });
    expect(ev.topConfusions.every((m, i) => m.actual !== m.predicted && (i === 0 || m.count <= ev.topConfusions[i - 1].count))).toBe(true);
  });
});
