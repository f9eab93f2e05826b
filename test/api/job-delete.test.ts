// DELETE /v1/jobs/:id over real HTTP, on SQLite with the fs artifact store and on PostgreSQL with
// the postgres one: a finished job goes with its records and its files; a job not finished, one
// whose model serves and one an unfinished job starts from are refused with a 409 that changes
// nothing; a train key deletes only its own jobs. On PostgreSQL, a promotion or a job naming the
// source in `init.fromJob` committed by another session while the delete runs is not lost.
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore } from '../../src/auth/key-store.js';
import { checkpointKey, jobPrefix, modelPrefix } from '../../src/artifacts/artifact-keys.js';
import { uploadDir } from '../../src/artifacts/transfer.js';
import { parseDatabaseUrl } from '../../src/db/database-url.js';
import { HISTORY_CHUNK } from '../../src/jobs/job-lifecycle.js';
import { MANIFEST_FILE, MODEL_FILE } from '../../src/export/manifest.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from './api-harness.js';
import { bearer } from './api-process.js';
import { insertModelRow, makeImage, writeFixtureModel } from '../serving/fixtures.js';

describe.each([
  ['sqlite', {}],
  ['postgres', { ARTIFACT_STORE: 'postgres' }],
] as const)('deleting jobs on %s', (kind, env) => {
  let h: Harness;
  let base: string;
  let admin: string;
  let trainer: string;
  let other: string;
  let models = 0;

  beforeAll(async () => {
    // No load shedding: the tests' own inserts of long histories run on this event loop (SQLite) and
    // stalled it past MAX_EVENT_LOOP_DELAY_MS on a loaded CI machine, so a DELETE met 503 OVERLOADED.
    // No burst limit either: the bulk-deletion test makes more than 20 requests a second with one key.
    h = await startHarness(kind, { MODEL_POLL_MS: '0', PREDICT_WORKERS: '1', MAX_EVENT_LOOP_DELAY_MS: '0', RATE_LIMIT_BURST_PER_SECOND: '0', ...env });
    await waitReady(h);
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const keys = new KeyStore(h.deps.db.prisma);
    admin = (await keys.create('admin', 'admin')).key;
    trainer = (await keys.create('trainer', 'train')).key;
    other = (await keys.create('other', 'train')).key;
    h.app.auth.forget(); // keys exist now: auth on
  });
  afterAll(async () => {
    await h?.close();
  });

  const prisma = () => h.deps.db.prisma;
  const call = async (method: string, url: string, key: string, body?: object) => {
    const res = await fetch(`${base}${url}`, {
      method,
      headers: { ...bearer(key), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  };
  const createJob = async (key: string, config: object = tinySynthetic) => (await call('POST', '/v1/jobs', key, config)).json.id as string;

  /** What a worker leaves of a job that succeeded: points, a checkpoint and a model, files in the store. */
  const finishJob = async (jobId: string, opts: { model?: boolean } = {}) => {
    await prisma().trainingJob.update({ where: { id: jobId }, data: { status: 'succeeded', finishedAt: new Date(), step: 2 } });
    for (const step of [1, 2]) await prisma().metricPoint.create({ data: { jobId, step, epoch: 1, loss: 1 / step } });
    const ckptDir = path.join(h.dir, `ckpt-${jobId}`);
    fs.mkdirSync(ckptDir, { recursive: true });
    fs.writeFileSync(path.join(ckptDir, 'checkpoint.json'), '{}');
    fs.writeFileSync(path.join(ckptDir, 'weights.bin'), Buffer.alloc(1024, 7));
    const key = checkpointKey(jobId, 2, 'tokentoken');
    await uploadDir(h.deps.artifacts, key, ckptDir);
    await prisma().checkpoint.create({ data: { jobId, step: 2, epoch: 1, key } });
    if (!opts.model) return null;
    const id = `model-${kind}-${++models}`;
    const m = await writeFixtureModel(path.join(h.dir, 'exports'), id, { seed: models });
    m.record.onnxKey = `${modelPrefix(id)}/${MODEL_FILE}`;
    m.record.manifestKey = `${modelPrefix(id)}/${MANIFEST_FILE}`;
    await uploadDir(h.deps.artifacts, modelPrefix(id), m.dir);
    await insertModelRow(prisma(), m, jobId, new Date(Date.now() - 60_000 * (100 - models)));
    return id;
  };
  const recorded = async (jobId: string) => ({
    job: await prisma().trainingJob.count({ where: { id: jobId } }),
    points: await prisma().metricPoint.count({ where: { jobId } }),
    events: await prisma().jobEvent.count({ where: { jobId } }),
    checkpoints: await prisma().checkpoint.count({ where: { jobId } }),
    models: await prisma().model.count({ where: { jobId } }),
  });
  const files = async (prefix: string) => (await h.deps.artifacts.list(prefix)).length;

  it('deletes a finished job with its points, events, checkpoints and model, files included; only its creator or an admin may', async () => {
    const jobId = await createJob(trainer);
    const modelId = (await finishJob(jobId, { model: true }))!;
    expect(await recorded(jobId)).toMatchObject({ job: 1, points: 2, checkpoints: 1, models: 1 });
    expect(await files(jobPrefix(jobId))).toBe(2);
    expect(await files(modelPrefix(modelId))).toBe(2);

    const png = await makeImage('png', 40, 40);
    const predictWith = async (id: string) => {
      const res = await fetch(`${base}/v1/predict?model=${id}`, {
        method: 'POST',
        body: new Uint8Array(png),
        headers: { 'content-type': 'image/png', ...bearer(admin) },
      });
      return res.status === 200 ? 200 : ((await res.json()) as { error: { code: string } }).error.code;
    };
    expect(await predictWith(modelId)).toBe(200); // loaded on demand

    const notOwner = await call('DELETE', `/v1/jobs/${jobId}`, other);
    expect([notOwner.status, notOwner.json.error.code]).toEqual([403, 'JOB_NOT_OWNED']);
    expect((await recorded(jobId)).job).toBe(1);

    const res = await call('DELETE', `/v1/jobs/${jobId}`, trainer);
    expect(res.status).toBe(204);
    expect(await recorded(jobId)).toEqual({ job: 0, points: 0, events: 0, checkpoints: 0, models: 0 });
    expect(await files(jobPrefix(jobId))).toBe(0);
    expect(await files(modelPrefix(modelId))).toBe(0);
    expect((await call('GET', `/v1/jobs/${jobId}`, trainer)).status).toBe(404);
    expect((await call('GET', `/v1/models/${modelId}`, admin)).status).toBe(404);
    expect(await predictWith(modelId)).toBe('MODEL_NOT_FOUND');
    const again = await call('DELETE', `/v1/jobs/${jobId}`, trainer);
    expect([again.status, again.json.error.code]).toEqual([404, 'JOB_NOT_FOUND']);
  });

  it('refuses a job that has not finished (409 JOB_STATE_CONFLICT) and changes nothing', async () => {
    const jobId = await createJob(trainer);
    const res = await call('DELETE', `/v1/jobs/${jobId}`, admin);
    expect([res.status, res.json.error.code]).toEqual([409, 'JOB_STATE_CONFLICT']);
    expect(res.json.error.message).toMatch(/queued.*cancel it first/);
    expect((await call('GET', `/v1/jobs/${jobId}`, trainer)).json.status).toBe('queued');
    expect((await call('POST', `/v1/jobs/${jobId}/cancel`, trainer)).status).toBe(200);
    expect((await call('DELETE', `/v1/jobs/${jobId}`, trainer)).status).toBe(204);
  });

  it('refuses the job whose model serves (409 MODEL_SERVING) until an admin promotes another; /v1/predict answers throughout', async () => {
    const older = await createJob(admin);
    const olderModel = (await finishJob(older, { model: true }))!;
    const newer = await createJob(admin);
    const newerModel = (await finishJob(newer, { model: true }))!;
    await h.app.serving.registry.refresh();
    const png = await makeImage('png', 40, 40);
    const predict = async () => {
      const res = await fetch(`${base}/v1/predict`, { method: 'POST', body: new Uint8Array(png), headers: { 'content-type': 'image/png', ...bearer(admin) } });
      return ((await res.json()) as { model: { id: string } }).model.id;
    };
    expect(await predict()).toBe(newerModel);

    const refused = await call('DELETE', `/v1/jobs/${newer}`, admin);
    expect([refused.status, refused.json.error.code]).toEqual([409, 'MODEL_SERVING']);
    expect(await recorded(newer)).toMatchObject({ job: 1, models: 1, checkpoints: 1 });
    expect(await files(modelPrefix(newerModel))).toBe(2);

    expect((await call('POST', `/v1/models/${olderModel}/promote`, admin)).status).toBe(200);
    expect((await call('DELETE', `/v1/jobs/${newer}`, admin)).status).toBe(204);
    expect(await predict()).toBe(olderModel);
    const list = (await call('GET', '/v1/models', admin)).json as { items: { id: string }[] };
    expect(list.items.map((m) => m.id)).not.toContain(newerModel);
  });

  it('refuses a job an unfinished job starts from (409 JOB_IN_USE) until that job ends', async () => {
    const source = await createJob(trainer);
    await finishJob(source);
    const user = await createJob(trainer, { ...tinySynthetic, init: { fromJob: source } });
    const unrelated = await createJob(trainer);
    expect(unrelated).not.toBe(user);

    const refused = await call('DELETE', `/v1/jobs/${source}`, trainer);
    expect([refused.status, refused.json.error.code]).toEqual([409, 'JOB_IN_USE']);
    expect(refused.json.error.message).toContain(user);
    expect(await recorded(source)).toMatchObject({ job: 1, checkpoints: 1 });

    expect((await call('POST', `/v1/jobs/${user}/cancel`, trainer)).status).toBe(200);
    expect((await call('DELETE', `/v1/jobs/${source}`, trainer)).status).toBe(204);
    expect(await files(jobPrefix(source))).toBe(0);
  });

  it('deletes a history of several chunks whole, and a refused deletion keeps every row of it', async () => {
    const source = await createJob(trainer);
    await finishJob(source);
    // Steps 3.. after finishJob's two; events with ids interleaved with another job's.
    const points = 3 * HISTORY_CHUNK + 7;
    await prisma().metricPoint.createMany({ data: Array.from({ length: points - 2 }, (_, i) => ({ jobId: source, step: i + 3, epoch: 1, loss: 1 })) });
    const neighbour = await createJob(trainer);
    const events = (jobId: string, n: number) =>
      prisma().jobEvent.createMany({ data: Array.from({ length: n }, () => ({ jobId, type: 'progress', payload: '{}' })) });
    await events(source, HISTORY_CHUNK + 1);
    await events(neighbour, 10);
    await events(source, HISTORY_CHUNK + 2);
    const before = await recorded(source);
    expect(before).toMatchObject({ job: 1, points });
    expect(before.events).toBeGreaterThan(2 * HISTORY_CHUNK);
    const neighbourEvents = (await recorded(neighbour)).events;

    const user = await createJob(trainer, { ...tinySynthetic, init: { fromJob: source } });
    const refused = await call('DELETE', `/v1/jobs/${source}`, trainer);
    expect([refused.status, refused.json.error.code]).toEqual([409, 'JOB_IN_USE']);
    expect(await recorded(source)).toEqual(before);

    expect((await call('POST', `/v1/jobs/${user}/cancel`, trainer)).status).toBe(200);
    expect((await call('DELETE', `/v1/jobs/${source}`, trainer)).status).toBe(204);
    expect(await recorded(source)).toEqual({ job: 0, points: 0, events: 0, checkpoints: 0, models: 0 });
    expect((await recorded(neighbour)).events).toBe(neighbourEvents);
  });

  /**
   * Runs `write` (one SQL statement) in a transaction of another PostgreSQL session (another
   * replica mid-request), and while it holds its locks, starts `request`; commits a moment later
   * and returns the request's answer.
   */
  const whileInFlight = async (write: string, request: () => ReturnType<typeof call>) => {
    const target = parseDatabaseUrl(h.settings.databaseUrl);
    if (target.provider !== 'postgres') throw new Error('a PostgreSQL test');
    const client = new pg.Client({ connectionString: target.connectionString, options: `-c search_path=${target.schema}` });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query(write);
      const answer = request();
      await new Promise((r) => setTimeout(r, 300));
      await client.query('COMMIT');
      return await answer;
    } finally {
      await client.end();
    }
  };

  it.runIf(kind === 'postgres')('a promotion committed while the delete waits makes it a 409 MODEL_SERVING, and the model stays', async () => {
    const serving = await createJob(admin);
    await finishJob(serving, { model: true });
    const target = await createJob(admin);
    const targetModel = (await finishJob(target, { model: true }))!;
    await prisma().model.update({ where: { jobId: serving }, data: { promotedAt: new Date() } });

    const res = await whileInFlight(`UPDATE "Model" SET "promotedAt" = now() + interval '1 second' WHERE "id" = '${targetModel}'`, () =>
      call('DELETE', `/v1/jobs/${target}`, admin),
    );
    expect([res.status, res.json?.error.code]).toEqual([409, 'MODEL_SERVING']);
    expect(await recorded(target)).toMatchObject({ job: 1, models: 1, checkpoints: 1 });
    expect((await call('GET', `/v1/models/${targetModel}`, admin)).json.promotedAt).not.toBeNull();
  });

  it.runIf(kind === 'postgres')(
    'a job posted to start from a job whose deletion is in flight is refused (400 INIT_JOB_INVALID), not queued to fail',
    async () => {
      const source = await createJob(trainer);
      await finishJob(source);
      const res = await whileInFlight(`DELETE FROM "TrainingJob" WHERE "id" = '${source}'`, () =>
        call('POST', '/v1/jobs', trainer, { ...tinySynthetic, init: { fromJob: source } }),
      );
      expect([res.status, res.json.error.code]).toEqual([400, 'INIT_JOB_INVALID']);
      const naming = await prisma().trainingJob.count({ where: { config: { contains: source } } });
      expect(naming).toBe(0);
    },
  );

  it("deletes a key's finished jobs created before a time, a page at a time; keeps unfinished, newer, in-use and other keys' jobs", async () => {
    const keys = new KeyStore(prisma());
    const { key: bulk, info: bulkInfo } = await keys.create(`bulk-${kind}`, 'train');
    const neighbour = (await keys.create(`neighbour-${kind}`, 'train')).key;
    const cancelled = async (key: string) => {
      const id = await createJob(key);
      expect((await call('POST', `/v1/jobs/${id}/cancel`, key)).status).toBe(200);
      return id;
    };
    const old1 = await cancelled(bulk);
    const source = await createJob(bulk);
    await finishJob(source);
    const old2 = await cancelled(bulk);
    const old3 = await createJob(bulk);
    await finishJob(old3);
    const theirs = await cancelled(neighbour);
    const queued = await createJob(bulk);
    const user = await createJob(bulk, { ...tinySynthetic, init: { fromJob: source } });
    await new Promise((r) => setTimeout(r, 20));
    const before = encodeURIComponent(new Date().toISOString());
    await new Promise((r) => setTimeout(r, 20));
    const newer = await cancelled(bulk);

    const noTime = await call('DELETE', '/v1/jobs', bulk);
    expect([noTime.status, noTime.json.error.issues[0].path]).toEqual([400, 'query.before']);
    const unfinished = await call('DELETE', `/v1/jobs?before=${before}&status=queued`, bulk);
    expect([unfinished.status, unfinished.json.error.issues[0].path]).toEqual([400, 'query.status']);

    const deleted: string[] = [];
    const kept: unknown[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await call('DELETE', `/v1/jobs?before=${before}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, bulk);
      expect(res.status, JSON.stringify(res.json)).toBe(200);
      deleted.push(...(res.json.deleted as string[]));
      kept.push(...(res.json.kept as unknown[]));
      cursor = res.json.nextCursor as string | null;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(2);
    expect(deleted.sort()).toEqual([old1, old2, old3].sort());
    expect(kept).toEqual([{ id: source, code: 'JOB_IN_USE', message: expect.stringContaining(user) as string }]);
    for (const id of [old1, old2, old3]) expect(await recorded(id)).toEqual({ job: 0, points: 0, events: 0, checkpoints: 0, models: 0 });
    expect(await files(jobPrefix(old3))).toBe(0);
    for (const id of [source, queued, user, newer]) expect((await call('GET', `/v1/jobs/${id}`, bulk)).status).toBe(200);
    expect((await call('GET', `/v1/jobs/${theirs}`, neighbour)).status).toBe(200);

    // Once nothing starts from it, `status` picks the succeeded source alone.
    expect((await call('POST', `/v1/jobs/${user}/cancel`, bulk)).status).toBe(200);
    const now = encodeURIComponent(new Date(Date.now() + 1000).toISOString());
    const succeeded = await call('DELETE', `/v1/jobs?before=${now}&status=succeeded`, bulk);
    expect(succeeded.json).toEqual({ deleted: [source], kept: [], nextCursor: null });
    expect((await call('GET', `/v1/jobs/${user}`, bulk)).status).toBe(200);

    // A page past its time budget ends early, its cursor after the last job it took: nothing skipped.
    const more = [await cancelled(bulk), await cancelled(bulk), await cancelled(bulk)];
    const later = new Date(Date.now() + 1000).toISOString();
    const early = await h.app.jobs.deleteFinishedBefore({ before: later, limit: 100 }, bulkInfo.id, 0);
    expect(early.deleted).toHaveLength(1);
    expect(early.nextCursor).not.toBeNull();
    // A file the store cannot delete is reported (the route logs it); the job goes all the same.
    const storeDelete = h.deps.artifacts.delete.bind(h.deps.artifacts);
    h.deps.artifacts.delete = async (prefix) => (prefix === jobPrefix(newer) ? Promise.reject(new Error('store down')) : storeDelete(prefix));
    const rest = await h.app.jobs.deleteFinishedBefore({ before: later, limit: 100, cursor: early.nextCursor! }, bulkInfo.id).finally(() => {
      h.deps.artifacts.delete = storeDelete;
    });
    expect(rest.leftPrefixes).toEqual([jobPrefix(newer)]);
    expect([...early.deleted, ...rest.deleted].sort()).toEqual([...more, newer, user].sort());
    expect(rest.nextCursor).toBeNull();
  });
});
