// The HTTP contract of /v1/jobs on real SQLite and real PostgreSQL (no worker runs here: jobs
// stay queued unless a test moves them).
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorBody } from '../../src/api/error-body.js';
import { claim } from '../../src/jobs/job-lifecycle.js';
import { JobCurve, JobList, JobView, MetricsPage } from '../../src/jobs/job-view.js';
import { startHarness, tinySynthetic, waitReady, type DbKind, type Harness } from './api-harness.js';

describe.each(['sqlite', 'postgres'] as DbKind[])('jobs API on %s', (kind) => {
  let h: Harness;
  beforeAll(async () => {
    // DATA_ROOT given: this API holds the workers' datasets, so it checks image folders itself.
    h = await startHarness(kind, { BODY_LIMIT: '4096', DATA_ROOT: fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-datasets-')) });
    await waitReady(h);
  });
  afterAll(async () => h?.close());

  const post = (body: unknown) => h.app.inject({ method: 'POST', url: '/v1/jobs', payload: body as object });
  const count = () => h.deps.db.prisma.trainingJob.count();

  it('takes a body-less cancel or delete that says content-type: application/json; an empty job body is CONFIG_INVALID; __proto__ is still refused', async () => {
    const json = { 'content-type': 'application/json' };
    const id = JobView.parse((await post(tinySynthetic)).json()).id;
    const cancel = await h.app.inject({ method: 'POST', url: `/v1/jobs/${id}/cancel`, headers: json });
    expect([cancel.statusCode, cancel.json().status]).toEqual([200, 'cancelled']);
    expect((await h.app.inject({ method: 'DELETE', url: `/v1/jobs/${id}`, headers: json })).statusCode).toBe(204);
    const before = await count();
    const empty = await h.app.inject({ method: 'POST', url: '/v1/jobs', headers: json });
    expect([empty.statusCode, ErrorBody.parse(empty.json()).error.code]).toEqual([400, 'CONFIG_INVALID']);
    const poisoned = await h.app.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: json,
      payload: '{"__proto__":{"autoServe":true},"dataset":{"type":"synthetic"}}',
    });
    expect([poisoned.statusCode, ErrorBody.parse(poisoned.json()).error.code]).toEqual([400, 'INVALID_JSON']);
    expect(await count()).toBe(before);
  });

  it('creates a queued job with the fully resolved config and puts it on the queue', async () => {
    const res = await post(tinySynthetic);
    expect(res.statusCode).toBe(201);
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const job = JobView.parse(res.json());
    expect(res.headers.location).toBe(`/v1/jobs/${job.id}`);
    expect(job.status).toBe('queued');
    expect(job.config.dataset).toEqual({ type: 'synthetic', classes: 2, samplesPerClass: 2, valPerClass: 16, seed: 1 });
    expect(job.config.training.batchSize).toBe(32);
    expect(job.config.quantization.emaDecay).toBe(0.999);
    expect(job.config.name).toBe('qat-job');
    expect(job.progress).toEqual({ epoch: 0, step: 0, totalSteps: null, imagesPerSecond: null, phase: null, trainingEndsAt: null });
    const again = JobView.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}` })).json());
    expect(again).toEqual(job);
    // Its own entry waits on the queue (no worker runs in this harness).
    expect(await h.deps.queue.entryState(job.id)).toBe('waiting');
  });

  it('answers an invalid config with 400, field paths, and writes nothing', async () => {
    const before = await count();
    const res = await post({ dataset: { type: 'synthetic' }, training: { batchSize: 0, epochs: 'x' }, model: { depth: 3 } });
    expect(res.statusCode).toBe(400);
    const body = ErrorBody.parse(res.json());
    expect(body.error.code).toBe('CONFIG_INVALID');
    const paths = body.error.issues.map((i) => i.path).sort();
    expect(paths).toEqual(['model', 'training.batchSize', 'training.epochs']);
    expect(body.error.issues.find((i) => i.path === 'model')!.message).toContain('depth');
    const missing = ErrorBody.parse((await post({})).json());
    expect(missing.error.issues.map((i) => i.path)).toEqual(['dataset']);
    expect(await count()).toBe(before);
  });

  it('resolves imagefolder paths under DATA_ROOT only', async () => {
    fs.mkdirSync(path.join(h.settings.dataRoot, 'pets', 'cat'), { recursive: true });
    fs.symlinkSync(h.dir, path.join(h.settings.dataRoot, 'escape'));
    const before = await count();
    for (const [p, code] of [
      ['../outside', 'DATASET_PATH_INVALID'],
      ['/etc', 'DATASET_PATH_INVALID'],
      ['escape', 'DATASET_PATH_INVALID'],
      ['nope', 'DATASET_NOT_FOUND'],
    ]) {
      const res = await post({ dataset: { type: 'imagefolder', path: p } });
      expect(res.statusCode, p).toBe(400);
      const body = ErrorBody.parse(res.json());
      expect(body.error.code, p).toBe(code);
      expect(body.error.issues[0].path).toBe('dataset.path');
    }
    expect(await count()).toBe(before);
    const ok = await post({ dataset: { type: 'imagefolder', path: 'pets' } });
    expect(ok.statusCode).toBe(201);
    expect(JobView.parse(ok.json()).config.dataset).toEqual({ type: 'imagefolder', path: 'pets', valSplit: 0.1 });
  });

  it("sizes an image folder's job by its class folders: the seed's configuration is admitted on 3 classes and on ImageNet's 1,000, a larger batch refused on 1,000 only", async () => {
    const seed = (p: string, batchSize = 32) => ({
      dataset: { type: 'imagefolder', path: p },
      model: { widthMultiplier: 1.0, inputSize: 224 },
      training: { batchSize },
    });
    for (const c of ['cats', 'ferns', 'lakes']) fs.mkdirSync(path.join(h.settings.dataRoot, 'photos', 'train', c), { recursive: true });
    fs.mkdirSync(path.join(h.settings.dataRoot, 'photos', 'val', 'cats'), { recursive: true });
    fs.writeFileSync(path.join(h.settings.dataRoot, 'photos', 'train', 'notes.txt'), 'not a class');
    expect((await post(seed('photos'))).statusCode).toBe(201);
    for (let c = 0; c < 1000; c++) fs.mkdirSync(path.join(h.settings.dataRoot, 'wide', `c${c}`), { recursive: true });
    expect((await post(seed('wide'))).statusCode).toBe(201);
    expect((await post(seed('photos', 33))).statusCode).toBe(201);
    const wide = await post(seed('wide', 33));
    expect([wide.statusCode, ErrorBody.parse(wide.json()).error.code]).toEqual([400, 'JOB_TOO_LARGE']);
    expect(ErrorBody.parse(wide.json()).error.issues[0].message).toMatch(/at batch 33 needs about \d+ MiB; the worker's budget is 4000 MiB: at most 32 fits/);
  });

  it('an API without the datasets (DATA_ROOT unset on `qatserve api`) queues a folder it cannot see, sized by the fewest classes; escapes are still 400', async () => {
    const bare = await startHarness(kind);
    try {
      expect(fs.existsSync(bare.settings.dataRoot)).toBe(false);
      const postTo = (body: unknown) => bare.app.inject({ method: 'POST', url: '/v1/jobs', payload: body as object });
      for (const p of ['../outside', 'a/../../b', '/etc', '..']) {
        const res = await postTo({ dataset: { type: 'imagefolder', path: p } });
        expect([res.statusCode, ErrorBody.parse(res.json()).error.code], p).toEqual([400, 'DATASET_PATH_INVALID']);
      }
      // The seed's configuration at its default batch: refused when sized as 1,000 classes.
      const res = await postTo({ dataset: { type: 'imagefolder', path: 'photos/2026' }, model: { widthMultiplier: 1.0, inputSize: 224 } });
      expect(res.statusCode, res.body).toBe(201);
      const job = JobView.parse(res.json());
      expect([job.status, job.config.dataset]).toEqual(['queued', { type: 'imagefolder', path: 'photos/2026', valSplit: 0.1 }]);
      const tooBig = await postTo({
        dataset: { type: 'imagefolder', path: 'photos' },
        model: { widthMultiplier: 1.0, inputSize: 224 },
        training: { batchSize: 40 },
      });
      expect([tooBig.statusCode, ErrorBody.parse(tooBig.json()).error.code]).toEqual([400, 'JOB_TOO_LARGE']);
    } finally {
      await bare.close();
    }
  });

  it('rejects init.fromJob that has no checkpoint', async () => {
    const res = await post({ ...tinySynthetic, init: { fromJob: 'nope' } });
    expect(res.statusCode).toBe(400);
    expect(ErrorBody.parse(res.json()).error).toMatchObject({ code: 'INIT_JOB_INVALID', issues: [{ path: 'init.fromJob' }] });
  });

  it('refuses init.fromJob of a job whose checkpoint has another width; another input size or class count is fine', async () => {
    const source = JobView.parse((await post({ dataset: { type: 'synthetic', classes: 3 }, model: { widthMultiplier: 0.5, inputSize: 32 } })).json());
    await h.deps.db.prisma.checkpoint.create({ data: { jobId: source.id, step: 8, epoch: 1, key: `jobs/${source.id}/checkpoints/a` } });
    const before = await count();
    const wider = await post({ dataset: { type: 'synthetic' }, model: { widthMultiplier: 1.0, inputSize: 32 }, init: { fromJob: source.id } });
    expect(wider.statusCode).toBe(400);
    expect(ErrorBody.parse(wider.json()).error).toMatchObject({
      code: 'INIT_JOB_INVALID',
      message: `job "${source.id}" cannot start this one: its model has width 0.5, this job's model.widthMultiplier is 1: a checkpoint starts only a model of its own width`,
      issues: [{ path: 'init.fromJob' }],
    });
    expect(await count()).toBe(before);
    const larger = await post({ dataset: { type: 'synthetic', classes: 5 }, model: { widthMultiplier: 0.5, inputSize: 96 }, init: { fromJob: source.id } });
    expect(larger.statusCode, larger.body).toBe(201);
  });

  it('answers unknown ids with 404, bad JSON with 400 and big bodies with 413, in the one shape', async () => {
    for (const [method, url] of [
      ['GET', '/v1/jobs/nope'],
      ['GET', '/v1/jobs/nope/metrics'],
      ['POST', '/v1/jobs/nope/cancel'],
    ] as const) {
      const res = await h.app.inject({ method, url });
      expect(res.statusCode, url).toBe(404);
      expect(ErrorBody.parse(res.json()).error.code).toBe('JOB_NOT_FOUND');
    }
    const route = await h.app.inject({ method: 'GET', url: '/v2/nothing' });
    expect(route.statusCode).toBe(404);
    expect(ErrorBody.parse(route.json()).error.code).toBe('ROUTE_NOT_FOUND');
    // Nothing PostgreSQL refuses with an error (a 500) reaches a query: a NUL in the URL, a name or
    // a cursor, a cursor's time outside the database's years.
    const cursor = (at: string, id: string) => `/v1/jobs?cursor=${Buffer.from(JSON.stringify([at, id])).toString('base64url')}`;
    for (const url of [
      '/v1/jobs/a%00b',
      '/v1/jobs/a%00b/metrics',
      '/v1/models/a%00B',
      '/v1/jobs?status=queued%00',
      cursor('2026-01-01T00:00:00.000Z', 'a\u0000b'),
      cursor('0000-01-01T00:00:00.000Z', 'x'),
      cursor('+275760-09-13T00:00:00.000Z', 'x'),
    ]) {
      const res = await h.app.inject({ method: 'GET', url });
      expect([res.statusCode, ErrorBody.parse(res.json()).error.code], url).toEqual([400, url.includes('cursor') ? 'VALIDATION_FAILED' : 'URL_INVALID']);
    }
    const jobsBefore = await count();
    for (const config of [
      { ...tinySynthetic, name: 'a\u0000b' },
      { ...tinySynthetic, name: 'two\nlines' },
      { ...tinySynthetic, init: { fromJob: 'a\u0000b' } },
    ]) {
      const res = await post(config);
      expect([res.statusCode, ErrorBody.parse(res.json()).error.code]).toEqual([400, 'CONFIG_INVALID']);
      expect(res.json().error.issues[0].message).toContain('control characters');
    }
    expect(await count()).toBe(jobsBefore);
    // Ids, steps and revisions are PostgreSQL integers: a larger one is a 400, not a failed query.
    const finished = JobView.parse((await post(tinySynthetic)).json()).id;
    await h.app.inject({ method: 'POST', url: `/v1/jobs/${finished}/cancel` });
    for (const q of ['cursor=2147483648', 'after=99999999999999']) {
      const res = await h.app.inject({ method: 'GET', url: `/v1/jobs/${finished}/metrics?${q}` });
      expect([res.statusCode, ErrorBody.parse(res.json()).error.code], q).toEqual([400, 'VALIDATION_FAILED']);
    }
    expect((await h.app.inject({ method: 'GET', url: `/v1/jobs/${finished}/metrics?cursor=2147483647` })).json()).toMatchObject({ points: [] });
    const events = (id: string) => h.app.inject({ method: 'GET', url: `/v1/jobs/${finished}/events`, headers: { 'last-event-id': id } });
    const tooBig = await events('2147483648');
    expect([tooBig.statusCode, ErrorBody.parse(tooBig.json()).error.code]).toEqual([400, 'LAST_EVENT_ID_INVALID']);
    const last = await events('2147483647'); // finished: nothing after it, the stream ends
    expect([last.statusCode, last.body.includes('event:')]).toEqual([200, false]);
    // The router's own refusals come in the same shape, without echoing the path.
    for (const [url, status, code] of [
      [`/v1/jobs/${'a'.repeat(3000)}`, 414, 'URL_PARAM_TOO_LONG'],
      ['/v1/jobs/%zz/cancel', 400, 'URL_INVALID'],
    ] as const) {
      const res = await h.app.inject({ method: url.endsWith('cancel') ? 'POST' : 'GET', url });
      expect([res.statusCode, ErrorBody.parse(res.json()).error.code]).toEqual([status, code]);
      expect(res.body.length).toBeLessThan(200);
    }

    const bad = await h.app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'application/json' }, payload: '{"dataset":' });
    expect(bad.statusCode).toBe(400);
    expect(ErrorBody.parse(bad.json()).error.code).toBe('INVALID_JSON');

    const before = await count();
    // A compressed body is refused unread, naming the coding taken; so is a plain one labelled coded.
    const body = JSON.stringify(tinySynthetic);
    for (const [coding, payload] of [
      ['gzip', gzipSync(body)],
      ['br', body],
    ] as const) {
      const coded = await h.app.inject({
        method: 'POST',
        url: '/v1/jobs',
        headers: { 'content-type': 'application/json', 'content-encoding': coding },
        payload,
      });
      expect([coded.statusCode, ErrorBody.parse(coded.json()).error.code, coded.headers['accept-encoding']]).toEqual([
        415,
        'UNSUPPORTED_CONTENT_ENCODING',
        'identity',
      ]);
      expect(coded.json().error.message).toContain(`"${coding}"`);
    }

    const big = await post({ ...tinySynthetic, name: 'x'.repeat(5000) });
    expect(big.statusCode).toBe(413);
    expect(ErrorBody.parse(big.json()).error.code).toBe('BODY_TOO_LARGE');
    expect(await count()).toBe(before);
    const identity = await h.app.inject({
      method: 'POST',
      url: '/v1/jobs',
      headers: { 'content-type': 'application/json', 'content-encoding': 'identity' },
      payload: body,
    });
    expect(identity.statusCode).toBe(201);

    const q = await h.app.inject({ method: 'GET', url: '/v1/jobs?limit=0&status=done' });
    expect(q.statusCode).toBe(400);
    expect(
      ErrorBody.parse(q.json())
        .error.issues.map((i) => i.path)
        .sort(),
    ).toEqual(['query.limit', 'query.status']);
  });

  it('Idempotency-Key: a retried POST returns the first job, never a second one', async () => {
    const key = `retry-${kind}-${Date.now()}`;
    const send = (body: object, k = key) => h.app.inject({ method: 'POST', url: '/v1/jobs', payload: body, headers: { 'idempotency-key': k } });
    const before = await count();
    const first = await send({ ...tinySynthetic, name: 'once' });
    expect(first.statusCode).toBe(201);
    const job = JobView.parse(first.json());
    // The client timed out and retries, several times at once: the same job every time.
    const retries = await Promise.all(Array.from({ length: 5 }, () => send({ ...tinySynthetic, name: 'once' })));
    for (const r of retries) {
      expect(r.statusCode).toBe(201);
      expect(JobView.parse(r.json()).id).toBe(job.id);
    }
    expect(await count()).toBe(before + 1);
    expect(await h.deps.queue.entryState(job.id)).toBe('waiting');

    // Concurrent first requests with a fresh key: one job between them.
    const racing = await Promise.all(Array.from({ length: 6 }, () => send({ ...tinySynthetic, name: 'race' }, `${key}-race`)));
    expect(new Set(racing.map((r) => r.statusCode))).toEqual(new Set([201]));
    expect(new Set(racing.map((r) => JobView.parse(r.json()).id)).size).toBe(1);
    expect(await count()).toBe(before + 2);

    // The same key with another body is a client bug: 422, nothing created.
    const other = await send({ ...tinySynthetic, name: 'different' });
    expect(other.statusCode).toBe(422);
    expect(ErrorBody.parse(other.json()).error).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', issues: [{ path: 'headers.idempotency-key' }] });
    const invalid = await send(tinySynthetic, 'x'.repeat(300));
    expect(invalid.statusCode).toBe(400);
    expect(ErrorBody.parse(invalid.json()).error.code).toBe('IDEMPOTENCY_KEY_INVALID');
    expect(await count()).toBe(before + 2);
  });

  it('cancels a queued job: it leaves the queue, never starts, and a second cancel is a 409', async () => {
    const job = JobView.parse((await post(tinySynthetic)).json());
    expect(await h.deps.queue.entryState(job.id)).toBe('waiting');
    const res = await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    expect(res.statusCode).toBe(200);
    const cancelled = JobView.parse(res.json());
    expect(cancelled.status).toBe('cancelled');
    expect(await h.deps.queue.entryState(job.id), 'the cancelled job is still on the queue').toBeNull();
    expect(cancelled.finishedAt).not.toBeNull();
    const again = await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    expect(again.statusCode).toBe(409);
    expect(ErrorBody.parse(again.json()).error.code).toBe('JOB_STATE_CONFLICT');
  });

  it.runIf(kind === 'sqlite')(
    "answers 507 STORAGE_FULL while the database's disk is full, stores nothing, and takes jobs again once there is room",
    async () => {
      const prisma = h.deps.db.prisma;
      // A full disk as SQLite meets one: no page beyond those the file has, and those filled (SQLITE_FULL).
      const [{ page_count: pages }] = await prisma.$queryRawUnsafe<Array<{ page_count: bigint }>>('PRAGMA page_count');
      await prisma.$queryRawUnsafe(`PRAGMA max_page_count = ${pages}`);
      let n = 0;
      const fill = (bytes: number) =>
        prisma.trainingJob.create({ data: { id: `filler-${++n}`, name: 'f'.repeat(bytes), status: 'failed', config: '{}' } }).then(
          () => true,
          (err: { code?: string }) => (err.code === 'SQLITE_FULL' ? false : Promise.reject(err as Error)),
        );
      // Large rows first, then smaller ones into what is left of the jobs table's pages.
      for (const bytes of [3000, 300, 10]) while (await fill(bytes));
      const before = await count();
      try {
        const full = await post(tinySynthetic);
        expect([full.statusCode, full.json().error.code]).toEqual([507, 'STORAGE_FULL']);
        expect(full.json().error.message).toContain('disk is full');
        expect(await count()).toBe(before);
      } finally {
        await prisma.$queryRawUnsafe('PRAGMA max_page_count = 1073741823');
        await prisma.trainingJob.deleteMany({ where: { id: { startsWith: 'filler-' } } });
      }
      expect((await post(tinySynthetic)).statusCode).toBe(201);
    },
  );

  it.runIf(kind === 'sqlite')(
    'answers 503 DATABASE_UNAVAILABLE saying the database is locked while another connection holds its write lock past the busy timeout, and stores nothing',
    async () => {
      // An `sqlite3` shell, a backup or a script with a write transaction left open: SQLite waits its
      // busy timeout (10 s), then fails SQLITE_BUSY. The answer said "cannot be reached" before.
      const other = new Database(h.settings.databaseUrl.replace(/^file:/, ''));
      const before = await count();
      other.exec('BEGIN IMMEDIATE');
      try {
        const locked = await post(tinySynthetic);
        expect([locked.statusCode, locked.json().error.code, locked.headers['retry-after']]).toEqual([503, 'DATABASE_UNAVAILABLE', '5']);
        expect(locked.json().error.message).toBe('the database is locked by another process; retry in 5 s');
      } finally {
        other.exec('ROLLBACK');
        other.close();
      }
      expect(await count()).toBe(before);
      expect((await post(tinySynthetic)).statusCode).toBe(201);
    },
    30_000,
  );

  it.runIf(kind === 'postgres')(
    "answers 507 STORAGE_FULL when PostgreSQL's disk is full, stores nothing, and takes jobs again once there is room",
    async () => {
      const prisma = h.deps.db.prisma;
      // In a transaction: only there does a raw statement have the job tables' schema on its search path.
      const sql = (statement: string) => prisma.$transaction((tx) => tx.$executeRawUnsafe(statement));
      // The error PostgreSQL sends when a table cannot grow (SQLSTATE 53100, disk_full), raised by a
      // trigger, since filling a disk needs a tablespace on a mount of its own. By hand, with the
      // tables on a 30 MB tmpfs filled up, this POST answered 500 INTERNAL before this test.
      await sql(`CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$`);
      await sql('CREATE TRIGGER disk_full BEFORE INSERT ON "TrainingJob" FOR EACH ROW EXECUTE FUNCTION disk_full()');
      const before = await count();
      try {
        const full = await post(tinySynthetic);
        expect([full.statusCode, full.json().error.code]).toEqual([507, 'STORAGE_FULL']);
        expect(await count()).toBe(before);
      } finally {
        await sql('DROP TRIGGER disk_full ON "TrainingJob"');
        await sql('DROP FUNCTION disk_full()');
      }
      expect((await post(tinySynthetic)).statusCode).toBe(201);
    },
  );

  it('resumes a failed or cancelled job: queued again and back on the queue, its error and end cleared; other states are a 409', async () => {
    const resume = (id: string) => h.app.inject({ method: 'POST', url: `/v1/jobs/${id}/resume` });
    const job = JobView.parse((await post(tinySynthetic)).json());
    expect((await resume(job.id)).statusCode).toBe(409); // queued
    await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    expect(await h.deps.queue.entryState(job.id)).toBeNull();
    const res = await resume(job.id);
    expect(res.statusCode, res.body).toBe(200);
    expect(JobView.parse(res.json())).toMatchObject({ status: 'queued', finishedAt: null, error: null });
    expect(await h.deps.queue.entryState(job.id)).toBe('waiting');
    const again = await resume(job.id);
    expect([again.statusCode, ErrorBody.parse(again.json()).error.code]).toEqual([409, 'JOB_STATE_CONFLICT']);

    // A failed one, as a worker or the queue ends it.
    await h.deps.db.prisma.trainingJob.update({
      where: { id: job.id },
      data: { status: 'failed', errorCode: 'WORKER_LOST', errorMessage: 'its worker died 5 times', finishedAt: new Date(), startedAt: new Date() },
    });
    const failed = JobView.parse((await resume(job.id)).json());
    expect(failed).toMatchObject({ status: 'queued', error: null, finishedAt: null, startedAt: null });
    expect(await h.deps.queue.entryState(job.id)).toBe('waiting');
    const events = await h.deps.db.prisma.jobEvent.findMany({ where: { jobId: job.id, type: 'status' }, orderBy: { id: 'asc' } });
    expect(events.map((e) => (JSON.parse(e.payload) as { status: string }).status)).toEqual(['queued', 'cancelled', 'queued', 'queued']);

    await h.deps.db.prisma.trainingJob.update({ where: { id: job.id }, data: { status: 'succeeded' } });
    expect((await resume(job.id)).statusCode).toBe(409);
    expect((await resume('00000000-0000-4000-8000-000000000000')).statusCode).toBe(404);
  });

  it('cancelling a running job moves it to cancelling (the worker finishes the move)', async () => {
    const job = JobView.parse((await post(tinySynthetic)).json());
    await h.deps.db.prisma.trainingJob.update({ where: { id: job.id }, data: { status: 'running' } });
    const res = await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    expect(JobView.parse(res.json()).status).toBe('cancelling');
    const twice = await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    expect(twice.statusCode).toBe(200);
    expect(JobView.parse(twice.json()).status).toBe('cancelling');
  });

  it('lists jobs newest first with cursor paging and a status filter', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(JobView.parse((await post({ ...tinySynthetic, name: `page-${i}` })).json()).id);
      await new Promise((r) => setTimeout(r, 5)); // distinct createdAt (ms) so "newest" is defined
    }
    const total = await count();
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/jobs?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = JobList.parse((await h.app.inject({ method: 'GET', url })).json());
      expect(page.jobs.length).toBeLessThanOrEqual(2);
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(seen).toHaveLength(total);
    expect(new Set(seen).size).toBe(total);
    expect(pages).toBe(Math.ceil(total / 2));
    expect(seen.slice(0, 5)).toEqual([...ids].reverse());

    const cancelled = JobList.parse((await h.app.inject({ method: 'GET', url: '/v1/jobs?status=cancelled' })).json());
    expect(cancelled.jobs.length).toBeGreaterThan(0);
    expect(cancelled.jobs.every((j) => j.status === 'cancelled')).toBe(true);
    const bad = await h.app.inject({ method: 'GET', url: '/v1/jobs?cursor=garbage' });
    expect(bad.statusCode).toBe(400);
  });

  it('pages metrics by step', async () => {
    const job = JobView.parse((await post(tinySynthetic)).json());
    for (let step = 1; step <= 7; step++) {
      await h.deps.db.prisma.metricPoint.create({
        data: { jobId: job.id, step, epoch: 1, loss: 2 - step / 10, learningRate: 0.05, imagesPerSecond: 1 },
      });
    }
    await h.deps.db.prisma.metricPoint.update({
      where: { jobId_step: { jobId: job.id, step: 7 } },
      data: { top1: 0.5, top5: 1 },
    });
    const steps: number[] = [];
    let after = 0;
    for (;;) {
      const page = MetricsPage.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/metrics?after=${after}&limit=3` })).json());
      steps.push(...page.points.map((p) => p.step));
      if (page.nextAfter === null) {
        expect(page.points.at(-1)).toMatchObject({ step: 7, loss: 1.3, top1: 0.5, top5: 1 });
        break;
      }
      after = page.nextAfter;
    }
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const tail = MetricsPage.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/metrics?after=7` })).json());
    expect(tail).toEqual({ points: [], nextAfter: null, nextCursor: null, more: false });
  });

  it('a metrics cursor returns every point and every later score exactly once', async () => {
    const job = JobView.parse((await post(tinySynthetic)).json());
    const c = await claim(h.deps.db.prisma, job.id);
    if (c.kind !== 'claimed') throw new Error('not claimed');
    const step = (n: number) => c.owner.step({ step: n, epoch: 1, loss: 2 - n / 10, learningRate: 0.05, imagesPerSecond: 1 });
    const seen: Array<[number, number | null]> = [];
    let cursor = 0;
    const poll = async (limit = 2) => {
      for (;;) {
        const res = await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/metrics?cursor=${cursor}&limit=${limit}` });
        const page = MetricsPage.parse(res.json());
        seen.push(...page.points.map((p): [number, number | null] => [p.step, p.top1]));
        cursor = page.nextCursor!;
        if (!page.more) return;
      }
    };
    for (let n = 1; n <= 3; n++) await step(n);
    await poll();
    await step(4);
    // The evaluation after step 3 lands on step 3's point, already served: the cursor brings it back.
    await c.owner.evaluated({ step: 3, epoch: 1, top1: 0.75, top5: 1 });
    await poll();
    await poll(); // nothing new: nothing again
    expect(seen).toEqual([
      [1, null],
      [2, null],
      [3, null],
      [4, null],
      [3, 0.75],
    ]);
    // `after` pages by step and misses the score written onto step 3 after it was read.
    const byStep = MetricsPage.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/metrics?after=3` })).json());
    expect(byStep.points.map((p) => p.step)).toEqual([4]);
    const both = await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/metrics?after=1&cursor=1` });
    expect(both.statusCode).toBe(400);
    expect(ErrorBody.parse(both.json()).error).toMatchObject({ code: 'METRICS_QUERY_CONFLICT', issues: [{ path: 'query.cursor' }] });
    const bad = await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/metrics?cursor=-1` });
    expect(bad.statusCode).toBe(400);
  });

  it('a metrics cursor pages whole writes: a second of steps written at once is never split', async () => {
    const job = JobView.parse((await post(tinySynthetic)).json());
    const c = await claim(h.deps.db.prisma, job.id);
    if (c.kind !== 'claimed') throw new Error('not claimed');
    const record = (n: number) => ({ step: n, epoch: 1, loss: 2 - n / 10, learningRate: 0.05, imagesPerSecond: 1 });
    // As the worker writes: each write holds the steps trained since the last one.
    for (const write of [
      [1, 2],
      [3, 4, 5, 6, 7],
      [8, 9, 10],
    ])
      await c.owner.steps(write.map(record));
    const pages: number[][] = [];
    let cursor = 0;
    for (;;) {
      const page = MetricsPage.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/metrics?cursor=${cursor}&limit=4` })).json());
      pages.push(page.points.map((p) => p.step));
      cursor = page.nextCursor!;
      if (!page.more) break;
    }
    // Short of the limit rather than split [3..7]; that write alone is more than 4, so it comes whole.
    expect(pages).toEqual([
      [1, 2],
      [3, 4, 5, 6, 7],
      [8, 9, 10],
    ]);
  });

  it("samples a long job's curve: the first step, every stride-th, the last, every scored one, and the event to follow from", async () => {
    const job = JobView.parse((await post(tinySynthetic)).json());
    const c = await claim(h.deps.db.prisma, job.id);
    if (c.kind !== 'claimed') throw new Error('not claimed');
    const record = (n: number) => ({ step: n, epoch: 1, loss: 2 - n / 100, learningRate: 0.05, imagesPerSecond: 1 });
    for (let first = 1; first <= 51; first += 5) await c.owner.steps([first, first + 1, first + 2, first + 3, first + 4].filter((n) => n <= 51).map(record));
    await c.owner.evaluated({ step: 17, epoch: 1, top1: 0.5, top5: 1 });
    const curve = async (q: string) => {
      const res = await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/curve${q}` });
      expect(res.statusCode, res.body).toBe(200);
      return JobCurve.parse(res.json());
    };
    const sampled = await curve('?points=10');
    expect(sampled.stride).toBe(6);
    expect(sampled.points.map((p) => p.step)).toEqual([1, 6, 12, 17, 18, 24, 30, 36, 42, 48, 51]);
    expect(sampled.points.find((p) => p.step === 17)).toMatchObject({ top1: 0.5, loss: 1.83 });
    // Nothing the points hold comes again after lastEventId; what is written later does.
    expect(await h.app.jobs.eventsSince(job.id, sampled.lastEventId!, 100)).toMatchObject({ events: [] });
    await c.owner.steps([record(52)]);
    const later = await h.app.jobs.eventsSince(job.id, sampled.lastEventId!, 100);
    expect(later.events.map((e) => e.type)).toEqual(['progress', 'metric']);
    // A job with no more steps than `points` comes whole.
    const whole = await curve('');
    expect(whole.stride).toBe(1);
    expect(whole.points.map((p) => p.step)).toEqual(Array.from({ length: 52 }, (_, i) => i + 1));
    for (const bad of ['?points=9', '?points=2001', '?points=x', '?every=2']) {
      expect((await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/curve${bad}` })).statusCode, bad).toBe(400);
    }
    expect((await h.app.inject({ method: 'GET', url: '/v1/jobs/nope/curve' })).statusCode).toBe(404);

    // More sampled steps than one SQLite query may bind (Prisma stops at 999 parameters).
    const rows = Array.from({ length: 4000 }, (_, i) => ({ jobId: job.id, ...record(i + 53), revision: 1000 }));
    await h.deps.db.prisma.metricPoint.createMany({ data: rows });
    const wide = await curve('?points=2000');
    expect(wide.stride).toBe(3);
    expect(wide.points).toHaveLength(1353); // the first, 3, 6, … 4050, the last (4052) and the scored 17
    expect(wide.points.at(-1)!.step).toBe(4052);
  });

  it('reports readiness and Prometheus metrics', async () => {
    const ready = await h.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.json()).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok', queue: 'ok', model: 'none' } });
    expect((await h.app.inject({ method: 'GET', url: '/healthz' })).json().status).toBe('ok');
    const metrics = await h.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toMatch(/qatserve_http_requests_total\{method="POST",route="\/v1\/jobs",status="201"\} \d+/);
    expect(metrics.body).toMatch(/qatserve_http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/v1\/jobs\/:id"\}/);
    const queued = await h.deps.db.prisma.trainingJob.count({ where: { status: 'queued' } });
    expect(metrics.body).toContain(`qatserve_jobs{status="queued"} ${queued}`);
    expect(metrics.body).toMatch(/qatserve_queue_jobs\{state="waiting"\} \d+/);
  });
});

describe('readiness without Redis', () => {
  it('answers 503 with the reason when Redis is unreachable', async () => {
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    const h = await startHarness('sqlite', { REDIS_URL: 'redis://127.0.0.1:1' });
    try {
      const res = await h.app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      const body = res.json();
      expect(body.status).toBe('unavailable');
      expect(body.checks.database).toBe('ok');
      expect(body.checks.redis).toMatch(/^error/);
      expect(body.checks.queue).toMatch(/^error/);
      expect(body.reason).toMatch(/redis error/);
      const post = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinySynthetic });
      expect(post.statusCode).toBe(503);
      expect(post.json().error.code).toBe('QUEUE_UNAVAILABLE');
      expect(post.headers['retry-after']).toBe('5');
      // Nothing was created: no row waits for a queue entry that never came.
      expect(await h.deps.db.prisma.trainingJob.count()).toBe(0);
    } finally {
      await h.close();
    }
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe('readiness when Redis stops', () => {
  it('is ready with its own redis-server, then 503 naming redis and the queue once it is stopped', async () => {
    const port = await freePort();
    const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    const exited = new Promise((r) => redis.once('exit', r));
    const h = await startHarness('sqlite', { REDIS_URL: `redis://127.0.0.1:${port}` });
    try {
      await waitReady(h, 10_000);
      redis.kill('SIGTERM');
      await exited;
      const res = await h.app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      const body = res.json();
      expect(body.checks.database).toBe('ok');
      expect(body.checks.redis).toMatch(/^error/);
      expect(body.checks.queue).toMatch(/^error/);
      expect(body.reason).toContain('redis');
    } finally {
      if (redis.exitCode === null) redis.kill('SIGKILL');
      await h.close();
    }
  });
});
