// The lifecycle module on real SQLite and PostgreSQL: the transition table, claims with owner
// tokens, fenced writes (a worker whose job was taken over writes nothing), and the ends the
// queue and the reconciler give jobs nobody owns.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import {
  claim,
  endUnowned,
  insertQueued,
  nextStates,
  overActiveCap,
  OwnershipLostError,
  requestCancel,
  requestResume,
  TRANSITIONS,
  unfinishedOf,
  type JobOwner,
} from '../../src/jobs/job-lifecycle.js';
import { JOB_STATUSES, TERMINAL_STATUSES } from '../../src/jobs/job-status.js';
import { TrainingConfig } from '../../src/config/training-config.js';
import { servingCandidates, type NewModel } from '../../src/db/model-rows.js';
import { KeyStore } from '../../src/auth/key-store.js';
import { toJobView, toMetricPointView } from '../../src/jobs/job-view.js';
import { dropSchema, pgUrl, tempSqliteUrl, uniqueSchema } from '../db/test-databases.js';

const config = TrainingConfig.parse({ dataset: { type: 'synthetic' } });
const DATASET = { description: 'synthetic 64 train / 16 val', classes: 2, classNames: ['a', 'b'], trainImages: 64, valImages: 16 };

describe('the transition table', () => {
  it('lets nothing leave a finished job but a resume of a failed or cancelled one, and every state be reached', () => {
    expect(nextStates('succeeded')).toEqual([]);
    expect(nextStates('failed')).toEqual(['queued']);
    expect(nextStates('cancelled')).toEqual(['queued']);
    for (const s of TERMINAL_STATUSES)
      expect(
        Object.entries(TRANSITIONS)
          .filter(([, t]) => (t.from as readonly string[]).includes(s))
          .map(([name]) => name),
        s,
      ).toEqual(s === 'succeeded' ? [] : ['resume']);
    expect(nextStates('queued')).toEqual(['running', 'failed', 'cancelled']);
    expect(nextStates('running')).toEqual(['queued', 'running', 'succeeded', 'failed', 'cancelled', 'cancelling']);
    expect(nextStates('cancelling')).toEqual(['failed', 'cancelled']);
    const reached = new Set(Object.values(TRANSITIONS).map((t) => t.to));
    expect(JOB_STATUSES.filter((s) => !reached.has(s))).toEqual([]);
  });
});

const sqlite = tempSqliteUrl('lifecycle');
const schema = uniqueSchema('lifecycle');

describe.each([
  ['sqlite', sqlite.url],
  ['postgres', pgUrl(schema)],
] as const)('job lifecycle on %s', (_kind, url) => {
  let db: Database;
  let n = 0;
  beforeAll(async () => {
    await migrate(url);
    db = openDatabase(url);
  });
  afterAll(async () => {
    await db?.close();
  });

  const newJob = async (key?: string) => {
    const { row } = await insertQueued(db.prisma, { id: `job-${++n}`, name: 'j', config, idempotencyKey: key });
    return row.id;
  };
  const claimed = async (id: string): Promise<JobOwner> => {
    const c = await claim(db.prisma, id);
    if (c.kind !== 'claimed') throw new Error(`not claimed: ${JSON.stringify(c)}`);
    return c.owner;
  };
  const row = (id: string) => db.prisma.trainingJob.findUniqueOrThrow({ where: { id } });
  const steps = async (id: string) => (await db.prisma.metricPoint.findMany({ where: { jobId: id }, orderBy: { step: 'asc' } })).map((p) => [p.step, p.loss]);
  const metric = (step: number, loss = step) => ({ step, epoch: 1, loss, learningRate: 0.1, imagesPerSecond: 10 });
  /** The Model row a succeeding owner records, its files under `prefix`. */
  const newModel = (jobId: string, prefix: string): NewModel => ({
    id: `m-${jobId}`,
    jobId,
    onnxKey: `${prefix}/model.onnx`,
    manifestKey: `${prefix}/manifest.json`,
    sizeBytes: 1,
    float32SizeBytes: 4,
    sha256: 'x',
    inputSize: 32,
    classes: ['a'],
    floatTop1: null,
    int8Top1: null,
    agreement: null,
    verificationImages: null,
    validationImages: null,
    validationTop1: null,
    validationTop5: null,
  });

  it('a job queued by an older version runs with the defaults of config fields added since', async () => {
    const id = await newJob();
    // As a version before checkpointEveryMinutes stored it.
    const { checkpointEveryMinutes: _added, ...olderTraining } = config.training;
    await db.prisma.trainingJob.update({ where: { id }, data: { config: JSON.stringify({ ...config, training: olderTraining }) } });
    const c = await claim(db.prisma, id);
    if (c.kind !== 'claimed') throw new Error(`not claimed: ${JSON.stringify(c)}`);
    expect(c.config.training.checkpointEveryMinutes).toBe(10);
    expect(c.config).toEqual(config);
  });

  it('a job whose stored config no longer resolves is failed CONFIG_INVALID by its claim, not run or retried', async () => {
    const id = await newJob();
    // As a version with a field this one has dropped stored it.
    await db.prisma.trainingJob.update({ where: { id }, data: { config: JSON.stringify({ ...config, training: { ...config.training, mixup: 0.2 } }) } });
    expect(await claim(db.prisma, id)).toEqual({ kind: 'not-runnable', status: 'failed' });
    const failed = await row(id);
    expect(failed).toMatchObject({ status: 'failed', errorCode: 'CONFIG_INVALID', ownerToken: null, attempts: 0 });
    expect(failed.errorMessage).toMatch(/^the job's stored config does not resolve with this version of qatserve \(training: Unrecognized key: "mixup"\)/);
    expect(await claim(db.prisma, id)).toEqual({ kind: 'not-runnable', status: 'failed' });
  });

  it('a claim writes a fresh owner token; a takeover fences the first owner out of every write', async () => {
    const id = await newJob();
    const a = await claimed(id);
    expect(await row(id)).toMatchObject({ status: 'running', ownerToken: a.token, attempts: 1 });
    await a.start({ backend: 'wasm', totalSteps: 10, startStep: 0, dataset: DATASET });
    expect(JSON.parse((await row(id)).dataset!)).toEqual(DATASET);
    await a.step(metric(1));
    await a.step(metric(2));

    // Its queue lock lapsed; another worker got the job and claimed it.
    const b = await claimed(id);
    expect(b.token).not.toBe(a.token);
    expect(await row(id)).toMatchObject({ status: 'running', ownerToken: b.token, attempts: 2 });

    // Everything the first owner tries now is refused and leaves no trace.
    await expect(a.step(metric(3, 99))).rejects.toBeInstanceOf(OwnershipLostError);
    await expect(a.evaluated({ step: 2, epoch: 1, top1: 0.9, top5: 1 })).rejects.toBeInstanceOf(OwnershipLostError);
    await expect(a.checkpoint({ step: 2, epoch: 1, key: 'jobs/x/checkpoints/a' }, 2)).rejects.toBeInstanceOf(OwnershipLostError);
    await expect(a.warning({ code: 'IMAGE_UNREADABLE', message: 'skipped x.png' })).rejects.toBeInstanceOf(OwnershipLostError);
    await expect(a.fail('BOOM', 'no')).rejects.toBeInstanceOf(OwnershipLostError);
    await expect(a.stop('shutdown')).rejects.toBeInstanceOf(OwnershipLostError);
    await expect(a.succeed(newModel(id, 'models/m'))).rejects.toBeInstanceOf(OwnershipLostError);
    expect(await steps(id)).toEqual([
      [1, 1],
      [2, 2],
    ]);
    expect(await db.prisma.checkpoint.count({ where: { jobId: id } })).toBe(0);
    expect(await db.prisma.model.count({ where: { jobId: id } })).toBe(0);
    expect(await row(id)).toMatchObject({ status: 'running', warnings: 0, errorCode: null, step: 2 });

    // The new owner resumes from step 1 (its checkpoint): the dead run's later point goes.
    await b.start({ backend: 'wasm', totalSteps: 10, startStep: 1, dataset: DATASET });
    expect(await steps(id)).toEqual([[1, 1]]);
    for (const s of [2, 3]) await b.step(metric(s, s * 10));
    expect(await steps(id)).toEqual([
      [1, 1],
      [2, 20],
      [3, 30],
    ]);
    const { outcome } = await b.succeed(newModel(id, `models/m-${id}`));
    expect(outcome).toBe('succeeded');
    expect(await row(id)).toMatchObject({ status: 'succeeded' });
    expect(await claim(db.prisma, id)).toEqual({ kind: 'not-runnable', status: 'succeeded' });
  });

  it('a job posted by a key revoked before its model is recorded: the model is held for promotion and the job says why; models recorded before serve on', async () => {
    const keys = new KeyStore(db.prisma);
    const { info: key } = await keys.create(`rotated-${n}`, ['admin']);
    const byKey = async () => (await insertQueued(db.prisma, { id: `job-${++n}`, name: 'j', config, createdByKeyId: key.id, autoServe: true })).row.id;
    const [before, after] = [await byKey(), await byKey()];
    const [a, b] = [await claimed(before), await claimed(after)];
    expect((await a.succeed(newModel(before, `models/m-${before}`))).outcome).toBe('succeeded');
    await keys.revoke(key.name);
    expect((await b.succeed(newModel(after, `models/m-${after}`))).outcome).toBe('succeeded');

    expect(await row(before)).toMatchObject({ autoServe: true, warnings: 0 });
    expect(await row(after)).toMatchObject({ status: 'succeeded', autoServe: false, warnings: 1 });
    expect(await db.prisma.model.count({ where: { jobId: after } })).toBe(1);
    const candidates = (await servingCandidates(db.prisma, 100)).map((m) => m.jobId);
    expect(candidates).toContain(before);
    expect(candidates).not.toContain(after);
    const events = await db.prisma.jobEvent.findMany({ where: { jobId: after }, orderBy: { id: 'asc' } });
    const warning = events.find((e) => e.type === 'warning');
    expect(JSON.parse(warning!.payload)).toEqual({
      code: 'MODEL_NOT_AUTO_SERVING',
      message: expect.stringContaining(`the API key "${key.name}" that posted this job was revoked at `),
    });
    // The warning comes before the status that ends the job, so a stream shows it before it ends.
    expect(events.map((e) => e.type).slice(-2)).toEqual(['warning', 'status']);
  });

  it('checkpoints: the newest `keep` stay recorded; the keys of the others come back for deletion', async () => {
    const id = await newJob();
    const o = await claimed(id);
    expect(await o.checkpoint({ step: 2, epoch: 1, key: 'k2' }, 2)).toEqual([]);
    expect(await o.checkpoint({ step: 4, epoch: 1, key: 'k4' }, 2)).toEqual([]);
    expect(await o.checkpoint({ step: 6, epoch: 2, key: 'k6' }, 2)).toEqual(['k2']);
    // The same step stored again under a new key (a re-save): the older copy is released.
    expect(await o.checkpoint({ step: 6, epoch: 2, key: 'k6b' }, 2)).toEqual(['k6']);
    const keys = (await db.prisma.checkpoint.findMany({ where: { jobId: id }, orderBy: { step: 'asc' } })).map((c) => c.key);
    expect(keys).toEqual(['k4', 'k6b']);
  });

  it('cancel: queued ends at once, running asks its owner to stop, finished refuses; a cancel during the export wins', async () => {
    const q = await newJob();
    expect(await requestCancel(db.prisma, q)).toEqual({ from: 'queued', to: 'cancelled' });
    expect(await claim(db.prisma, q)).toEqual({ kind: 'not-runnable', status: 'cancelled' });
    await expect(requestCancel(db.prisma, q)).rejects.toMatchObject({ statusCode: 409 });

    const r = await newJob();
    const o = await claimed(r);
    expect(await requestCancel(db.prisma, r)).toEqual({ from: 'running', to: 'cancelling' });
    expect(await requestCancel(db.prisma, r)).toEqual({ from: 'cancelling', to: 'cancelling' });
    // The owner's next step learns of it and still records the step it finished.
    expect(await o.step(metric(1))).toBe('cancelling');
    const { outcome } = await o.succeed(newModel(r, 'models/c'));
    expect(outcome).toBe('cancelled');
    expect(await db.prisma.model.count({ where: { jobId: r } })).toBe(0);
    expect(await row(r)).toMatchObject({ status: 'cancelled' });
    await expect(requestCancel(db.prisma, 'nope')).rejects.toMatchObject({ statusCode: 404 });
  });

  it('a shutdown hands the job back; a claim of a job cancelled while nobody ran it ends it cancelled', async () => {
    const id = await newJob();
    const o = await claimed(id);
    expect(await o.stop('shutdown')).toBe('handed-back');
    expect(await row(id)).toMatchObject({ status: 'queued', ownerToken: null });
    const o2 = await claimed(id);
    expect(o2.attempt).toBe(2);
    await requestCancel(db.prisma, id); // cancelling; then the owner dies without hearing it
    expect(await claim(db.prisma, id)).toEqual({ kind: 'not-runnable', status: 'cancelled' });
    await expect(o2.step(metric(1))).rejects.toBeInstanceOf(OwnershipLostError);
    expect(await claim(db.prisma, 'nope')).toEqual({ kind: 'missing' });
  });

  it('ends unowned jobs only if they are still as they were seen', async () => {
    const id = await newJob();
    const o = await claimed(id);
    // The reconciler saw the job running under its first owner; a takeover since then wins.
    await claimed(id);
    expect(await endUnowned(db.prisma, { id, status: 'running', ownerToken: o.token }, 'QUEUE_ENTRY_LOST', 'gone')).toBeNull();
    expect(await row(id)).toMatchObject({ status: 'running' });
    const now = await row(id);
    expect(await endUnowned(db.prisma, { id, status: 'running', ownerToken: now.ownerToken }, 'QUEUE_ENTRY_LOST', 'gone')).toBe('failed');
    expect(await row(id)).toMatchObject({ status: 'failed', errorCode: 'QUEUE_ENTRY_LOST', ownerToken: null });
    expect(await endUnowned(db.prisma, { id }, 'WORKER_LOST', 'x')).toBeNull(); // finished: untouched
    expect((await row(id)).errorCode).toBe('QUEUE_ENTRY_LOST');
  });

  it('each write raises the revision and records its events in order; scores move their point above older cursors', async () => {
    const woken: string[] = [];
    const wake = (jobId: string) => woken.push(jobId);
    const { row: created } = await insertQueued(db.prisma, { id: `job-${++n}`, name: 'j', config }, wake);
    const id = created.id;
    const c = await claim(db.prisma, id, wake);
    if (c.kind !== 'claimed') throw new Error('not claimed');
    const o = c.owner;
    await o.start({ backend: 'wasm', totalSteps: 4, startStep: 0, dataset: DATASET });
    await o.step(metric(1));
    await o.step(metric(2));
    const before = (await row(id)).revision;
    await o.evaluated({ step: 1, epoch: 1, top1: 0.5, top5: 1, floatTop1: 0.6 });
    await o.fail('BOOM', 'it broke');
    const points = await db.prisma.metricPoint.findMany({ where: { jobId: id }, orderBy: { step: 'asc' } });
    // Step 1's scores came after step 2: its point now has the newest point revision.
    expect(points.map((p) => p.revision)).toEqual([before + 1, before]);
    expect((await row(id)).revision).toBe(before + 2);
    const events = await db.prisma.jobEvent.findMany({ where: { jobId: id }, orderBy: { id: 'asc' } });
    expect(events.map((e) => e.type)).toEqual(['status', 'status', 'progress', 'progress', 'metric', 'progress', 'metric', 'evaluation', 'status']);
    expect(events.map((e) => JSON.parse(e.payload).status).filter(Boolean)).toEqual(['queued', 'running', 'failed']);
    expect(JSON.parse(events[7].payload)).toMatchObject({ step: 1, top1: 0.5, floatTop1: 0.6, revision: before + 1 });
    expect(JSON.parse(events[8].payload)).toEqual({ status: 'failed', error: { code: 'BOOM', message: 'it broke' } });
    // One wake-up per committed write, none for a write that changed nothing.
    expect(woken.length).toBe(7);
    expect(await endUnowned(db.prisma, { id }, 'WORKER_LOST', 'x', wake)).toBeNull();
    expect(woken.length).toBe(7);
  });

  it("a failed job's error holds no path, connection string or stack of the worker's machine, in its row and its event", async () => {
    const raw = `training failed: the server's data root "/srv/secret-mount/datasets" does not exist; store postgresql://app:hunter2@db.internal:5432/q\n    at scan (/opt/qatserve/dist/data/image-folder.js:12:3)`;
    const seen = async (id: string) => {
      const job = await row(id);
      const events = await db.prisma.jobEvent.findMany({ where: { jobId: id, type: 'status' }, orderBy: { id: 'asc' } });
      return [job.errorMessage, (JSON.parse(events[events.length - 1].payload) as { error: { message: string } }).error.message];
    };
    const expected = `training failed: the server's data root "<path>" does not exist; store <redacted>`;
    const { row: owned } = await insertQueued(db.prisma, { id: `job-${++n}`, name: 'j', config });
    const c = await claim(db.prisma, owned.id);
    if (c.kind !== 'claimed') throw new Error('not claimed');
    await c.owner.fail('DATASET_NOT_FOUND', raw);
    expect(await seen(owned.id)).toEqual([expected, expected]);
    const { row: lost } = await insertQueued(db.prisma, { id: `job-${++n}`, name: 'j', config });
    expect(await endUnowned(db.prisma, { id: lost.id }, 'WORKER_LOST', raw)).toBe('failed');
    expect(await seen(lost.id)).toEqual([expected, expected]);
  });

  it('several steps in one write: every point and its metric event, one revision, the newest progress; an existing point keeps its scores', async () => {
    const id = await newJob();
    const o = await claimed(id);
    await o.start({ backend: 'wasm', totalSteps: 10, startStep: 0, dataset: DATASET });
    await o.step(metric(1));
    await o.evaluated({ step: 1, epoch: 1, top1: 0.5, top5: 1 });
    const before = (await row(id)).revision;
    const lastEvent = (await db.prisma.jobEvent.findFirstOrThrow({ where: { jobId: id }, orderBy: { id: 'desc' } })).id;

    // Step 1's point exists, with scores: it is updated, not duplicated; 2 and 3 are new.
    expect(await o.steps([metric(1, 7), metric(2, 8), metric(3, 9)])).toBe('running');
    expect(await steps(id)).toEqual([
      [1, 7],
      [2, 8],
      [3, 9],
    ]);
    expect(await row(id)).toMatchObject({ step: 3, revision: before + 1 });
    const points = await db.prisma.metricPoint.findMany({ where: { jobId: id }, orderBy: { step: 'asc' } });
    expect(points.map((p) => [p.revision, p.top1])).toEqual([
      [before + 1, 0.5],
      [before + 1, null],
      [before + 1, null],
    ]);
    const events = await db.prisma.jobEvent.findMany({ where: { jobId: id, id: { gt: lastEvent } }, orderBy: { id: 'asc' } });
    expect(events.map((e) => [e.type, JSON.parse(e.payload).step])).toEqual([
      ['progress', 3],
      ['metric', 1],
      ['metric', 2],
      ['metric', 3],
    ]);
    expect(JSON.parse(events[1].payload)).toMatchObject({ loss: 7, top1: 0.5, revision: before + 1 });
    // A live curve shows what GET .../metrics will: the points as stored, to the last digit.
    expect(events.slice(1).map((e) => JSON.parse(e.payload))).toEqual(points.map(toMetricPointView));
    await o.steps([metric(4, 1.0949373245239258), metric(5, Math.fround(0.1))]);
    const stored = await db.prisma.metricPoint.findMany({ where: { jobId: id, step: { gt: 3 } }, orderBy: { step: 'asc' } });
    const streamed = await db.prisma.jobEvent.findMany({ where: { jobId: id, type: 'metric', id: { gt: events.at(-1)!.id } }, orderBy: { id: 'asc' } });
    expect(streamed.map((e) => JSON.parse(e.payload))).toEqual(stored.map(toMetricPointView));
    await expect(o.steps([])).rejects.toBeInstanceOf(RangeError);
  });

  it("says while a job trains when its last step should be done, at the run's pace; nothing once it is done, or for a new run before its first step", async () => {
    const id = await newJob();
    const view = async () => toJobView(await row(id)).progress.trainingEndsAt;
    const o = await claimed(id);
    await o.start({ backend: 'wasm', totalSteps: 40, startStep: 0, dataset: DATASET });
    expect(await view()).toBeNull();
    await new Promise((r) => setTimeout(r, 200));
    const before = Date.now();
    await o.steps([metric(1), metric(2)]);
    // 2 steps in >= 200 ms: >= 100 ms a step, 38 left.
    const endsAt = Date.parse((await view())!);
    expect(endsAt).toBeGreaterThanOrEqual(before + 38 * 100);
    expect(endsAt).toBeLessThan(Date.now() + 38 * 5_000);
    const event = await db.prisma.jobEvent.findFirstOrThrow({ where: { jobId: id, type: 'progress' }, orderBy: { id: 'desc' } });
    expect(JSON.parse(event.payload).trainingEndsAt).toBe(new Date(endsAt).toISOString());
    // Its last step: the final evaluation and the export are left, which it does not time.
    await o.steps([metric(40)]);
    expect(await view()).toBeNull();

    // Handed back and claimed again: the dead run's estimate is not shown for the new one.
    const again = await newJob();
    const first = await claimed(again);
    await first.start({ backend: 'wasm', totalSteps: 40, startStep: 0, dataset: DATASET });
    await first.steps([metric(1)]);
    expect(toJobView(await row(again)).progress.trainingEndsAt).not.toBeNull();
    expect(await first.stop('shutdown')).toBe('handed-back');
    const second = await claimed(again);
    expect(toJobView(await row(again)).progress.trainingEndsAt).toBeNull();
    await second.start({ backend: 'wasm', totalSteps: 40, startStep: 1, dataset: DATASET });
    expect(toJobView(await row(again)).progress.trainingEndsAt).toBeNull();
  });

  it('the queue and the reconciler record and announce the ends they give jobs', async () => {
    const id = await newJob();
    const woken: string[] = [];
    expect(await endUnowned(db.prisma, { id, status: 'queued' }, 'QUEUE_ENTRY_LOST', 'gone', (j) => woken.push(j))).toBe('failed');
    expect(woken).toEqual([id]);
    const last = await db.prisma.jobEvent.findFirstOrThrow({ where: { jobId: id }, orderBy: { id: 'desc' } });
    expect({ type: last.type, payload: JSON.parse(last.payload) }).toEqual({
      type: 'status',
      payload: { status: 'failed', error: { code: 'QUEUE_ENTRY_LOST', message: 'gone' } },
    });
    const cancelling = await newJob();
    await claimed(cancelling);
    await requestCancel(db.prisma, cancelling);
    expect(await endUnowned(db.prisma, { id: cancelling }, 'WORKER_LOST', 'stalled', (j) => woken.push(j))).toBe('cancelled');
    expect(woken).toEqual([id, cancelling]);
  });

  it('an idempotency key names one job', async () => {
    const first = await insertQueued(db.prisma, { id: `job-${++n}`, name: 'j', config, idempotencyKey: `key-${n}` });
    const again = await insertQueued(db.prisma, { id: `job-${++n}`, name: 'j', config, idempotencyKey: `key-${n - 1}` });
    expect(first.created).toBe(true);
    expect(again).toMatchObject({ created: false, row: { id: first.row.id } });
  });

  it("holds a key's cap on unfinished jobs when its resumes and creates race", async () => {
    // On PostgreSQL each transaction counted before the others' writes were committed, so three
    // resumes at once all passed a cap of 2 that had room for one.
    const keys = new KeyStore(db.prisma);
    for (let round = 0; round < 5; round++) {
      const { info: key } = await keys.create(`capped-${++n}`, ['train']);
      const job = async () => (await insertQueued(db.prisma, { id: `job-${++n}`, name: 'j', config, createdByKeyId: key.id })).row.id;
      await job(); // queued: one of the cap's two places
      const cancelled = [await job(), await job(), await job()];
      for (const id of cancelled) await requestCancel(db.prisma, id);
      // A create checks after its insert, as JobService does.
      const create = async () => {
        const id = await job();
        if (await overActiveCap(db.prisma, key.id, 2)) await db.prisma.trainingJob.delete({ where: { id } });
      };
      const results = await Promise.allSettled([...cancelled.map((id) => requestResume(db.prisma, id, 2)), create()]);
      expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
      // Exactly the cap: never over it, and a refusal is only ever for want of room.
      expect(await db.prisma.trainingJob.count({ where: unfinishedOf(key.id) })).toBe(2);
    }
  });
});

afterAll(async () => {
  await dropSchema(schema);
  fs.rmSync(sqlite.dir, { recursive: true, force: true });
});
