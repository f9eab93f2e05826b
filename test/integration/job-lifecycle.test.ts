// The job state machine end to end: in-process API (inject), real worker processes running the
// real trainer and exporter, real Redis, real SQLite.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelManifest } from '../../src/export/manifest.js';
import { JobView, MetricsPage } from '../../src/jobs/job-view.js';
import { startHarness, waitReady, type Harness } from '../api/api-harness.js';
import { assertBuilt, FAST_QUEUE_ENV, spawnWorker, tinyJob, waitForJob, type WorkerProc } from './worker-process.js';

const terminal = (j: JobView) => ['succeeded', 'failed', 'cancelled'].includes(j.status);

describe('job lifecycle with a worker process (SQLite)', () => {
  let h: Harness;
  let env: Record<string, string>;
  const workers: WorkerProc[] = [];

  beforeAll(async () => {
    assertBuilt();
    h = await startHarness('sqlite', FAST_QUEUE_ENV);
    await waitReady(h);
    env = {
      DATABASE_URL: h.settings.databaseUrl,
      DATA_DIR: h.settings.dataDir,
      QUEUE_PREFIX: h.settings.queuePrefix,
    };
  });
  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    await h?.close();
  });

  const post = async (body: unknown) => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: body as object });
    expect(res.statusCode, res.body).toBe(201);
    return JobView.parse(res.json());
  };
  const metrics = async (id: string) => MetricsPage.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${id}/metrics?limit=1000` })).json()).points;

  // One step of 0.35@32, then 1000 validation images: the final evaluation and the export's
  // verification take seconds, time to cancel in.
  const postBigValidationJob = (name: string, seed: number) =>
    post({
      name,
      dataset: { type: 'synthetic', classes: 4, samplesPerClass: 4, valPerClass: 250, seed },
      model: { widthMultiplier: 0.35, inputSize: 32 },
      training: { epochs: 1, batchSize: 16, maxSteps: 1 },
    });
  const logged = (w: WorkerProc, jobId: string, text: string) =>
    w
      .output()
      .split('\n')
      .filter((l) => l.includes(jobId) && l.includes(text));
  // Cancelled with no model, and the export not run to its end (one that finished logs the job's result).
  const expectCancelledWithoutExport = async (w: WorkerProc, jobId: string) => {
    const done = await waitForJob(h.app, jobId, terminal, 120_000, [w]);
    expect(done.status).toBe('cancelled');
    expect(done.model).toBeNull();
    expect(logged(w, jobId, 'job finished'), w.output().slice(-2000)).toEqual([]);
    expect(await h.deps.db.prisma.model.count({ where: { jobId } })).toBe(0);
  };

  it('trains, exports and verifies: succeeded with a model and one metric point per step', async () => {
    const w = spawnWorker(env, 'a');
    workers.push(w);
    const job = await post(tinyJob(4));
    const done = await waitForJob(h.app, job.id, terminal, 120_000, [w]);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.progress).toMatchObject({ step: 4, totalSteps: 4, epoch: 1 });
    expect(done.progress.imagesPerSecond).toBeGreaterThan(0);
    expect(['wasm', 'cpu', 'tensorflow']).toContain(done.backend);
    expect(done.attempts).toBe(1);
    expect(done.startedAt! >= done.createdAt && done.finishedAt! >= done.startedAt!).toBe(true);
    expect(done.model).not.toBeNull();
    expect(done.model!.classes).toHaveLength(2);
    expect(done.model!.sizeBytes).toBeLessThan(done.model!.float32SizeBytes);
    expect(done.model!.agreement).toBeGreaterThan(0.5);
    const points = await metrics(job.id);
    expect(points.map((p) => p.step)).toEqual([1, 2, 3, 4]);
    expect(points.every((p) => Number.isFinite(p.loss) && p.learningRate! > 0)).toBe(true);
    // The end-of-run evaluation lands on the last step's point.
    expect(points[3].top1).not.toBeNull();
    const row = await h.deps.db.prisma.model.findUnique({ where: { jobId: job.id } });
    expect(row?.sha256).toMatch(/^[0-9a-f]{64}$/);
    // The Model row says what the stored manifest says, field for field.
    const chunks: Buffer[] = [];
    for await (const c of await h.deps.artifacts.get(row!.manifestKey)) chunks.push(c as Buffer);
    const manifest = ModelManifest.parse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
    expect({ ...row, classes: JSON.parse(row!.classes) }).toMatchObject({
      jobId: manifest.jobId,
      sha256: manifest.sha256,
      sizeBytes: manifest.sizeBytes,
      float32SizeBytes: manifest.float32SizeBytes,
      inputSize: manifest.input.size,
      classes: manifest.classes,
      floatTop1: manifest.accuracy.floatTop1,
      int8Top1: manifest.accuracy.int8Top1,
      agreement: manifest.accuracy.agreement,
      verificationImages: manifest.accuracy.images,
      validationImages: manifest.evaluation!.images,
      validationTop1: manifest.evaluation!.top1,
      validationTop5: manifest.evaluation!.top5,
      onnxKey: `${row!.manifestKey.slice(0, row!.manifestKey.lastIndexOf('/'))}/${manifest.file}`,
    });
    expect(manifest.jobId).toBe(job.id);
  });

  it("shows a job's evaluation and export as its phase while they run, with the images done", async () => {
    const w = spawnWorker(env, 'phase');
    workers.push(w);
    const job = await postBigValidationJob('phases', 5);
    // What a user polling GET /v1/jobs/:id sees while the job sits at its last step.
    const polled: NonNullable<JobView['progress']['phase']>[] = [];
    const done = await waitForJob(
      h.app,
      job.id,
      (j) => {
        if (j.progress.phase) polled.push(j.progress.phase);
        return terminal(j);
      },
      120_000,
      [w],
    );
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.progress.phase).toBeNull();
    expect(polled.length, 'no poll saw the evaluation or the export').toBeGreaterThan(0);
    expect(polled.every((p) => p.done === null || p.done <= p.total!)).toBe(true);

    // The event stream's record of it: the phases in order, each ended before the job succeeded.
    const events = (await h.deps.db.prisma.jobEvent.findMany({ where: { jobId: job.id }, orderBy: { id: 'asc' } })).map((e) => ({
      type: e.type,
      data: JSON.parse(e.payload),
    }));
    const phases = events.filter((e) => e.type === 'progress' && 'phase' in e.data).map((e) => e.data.phase);
    const evaluating = phases.filter((p) => p?.name === 'evaluating');
    expect(evaluating.length).toBeGreaterThan(0);
    // The split's 1,000 images scored, then (the last evaluation) the export's verification images.
    for (const p of evaluating) {
      expect(['int8 top-1 on the validation split', 'float top-1 on the validation split', 'int8 logits of the images the export verifies']).toContain(p.task);
      expect(p.total).toBe(1000);
      expect(p.done).toBeLessThanOrEqual(1000);
    }
    // Within a task the count only grows.
    for (let i = 1; i < phases.length; i++) {
      if (phases[i] && phases[i - 1]?.task === phases[i].task) expect(phases[i].done).toBeGreaterThanOrEqual(phases[i - 1].done);
    }
    const firstExport = phases.findIndex((p) => p?.name === 'exporting');
    expect(firstExport, JSON.stringify(phases)).toBeGreaterThan(phases.findLastIndex((p) => p?.name === 'evaluating'));
    expect(phases[firstExport].task).toBe('building the int8 ONNX file');
    // The evaluation ended (null) before the export began, and the export ended before the outcome.
    expect(phases.slice(0, firstExport)).toContain(null);
    expect(phases.at(-1)).toBeNull();
    const succeededAt = events.findIndex((e) => e.type === 'status' && e.data.status === 'succeeded');
    expect(events.findLastIndex((e) => e.type === 'progress' && e.data.phase === null)).toBeLessThan(succeededAt);
    // The later tests count on one worker.
    w.proc.kill('SIGTERM');
    await w.exited;
  });

  it("init.fromJob starts a new job from an earlier job's newest checkpoint", async () => {
    const w = workers[0];
    const [first] = (await h.app.inject({ method: 'GET', url: '/v1/jobs?status=succeeded&limit=1' })).json().jobs;
    const from = await h.deps.db.prisma.checkpoint.findFirst({ where: { jobId: first.id }, orderBy: { step: 'desc' } });
    const job = await post({ ...tinyJob(4, { name: 'fine-tune' }), init: { fromJob: first.id } });
    expect(job.config.init.fromJob).toBe(first.id);
    const done = await waitForJob(h.app, job.id, terminal, 120_000, [w]);
    expect(done.progress.step).toBe(4);
    expect(['TRAINER_CRASHED', 'INIT_CHECKPOINT_MISSING']).not.toContain(done.error?.code);
    expect(w.output()).toContain(`"initFrom":"${from!.key}"`);
  });

  it('a job whose training fails ends failed with the error code, once (not retried)', async () => {
    const w = workers[0];
    fs.mkdirSync(path.join(h.settings.dataRoot, 'empty', 'cat'), { recursive: true });
    const job = await post({ dataset: { type: 'imagefolder', path: 'empty' }, training: { epochs: 1, batchSize: 4 } });
    const done = await waitForJob(h.app, job.id, terminal, 60_000, [w]);
    expect(done.status).toBe('failed');
    expect(done.error?.code).toMatch(/^DATASET_/);
    expect(done.finishedAt).not.toBeNull();
    await new Promise((r) => setTimeout(r, 1500));
    expect((await h.deps.queue.counts()).waiting).toBe(0);
    expect((await waitForJob(h.app, job.id, () => true, 1000)).attempts).toBe(1);
  });

  it('cancel while running stops between steps and keeps a checkpoint; a queued job cancelled never starts', async () => {
    const w = workers[0];
    const long = await post(tinyJob(400, { checkpointEverySteps: 1, name: 'long' }));
    const queued = await post(tinyJob(4, { name: 'waits' }));
    await waitForJob(h.app, long.id, (j) => j.status === 'running' && j.progress.step >= 2, 120_000, [w]);

    // The worker is busy (concurrency 1), so this one is still queued: cancel it first.
    const qc = await h.app.inject({ method: 'POST', url: `/v1/jobs/${queued.id}/cancel` });
    expect(JobView.parse(qc.json()).status).toBe('cancelled');

    const rc = await h.app.inject({ method: 'POST', url: `/v1/jobs/${long.id}/cancel` });
    expect(['cancelling', 'cancelled']).toContain(JobView.parse(rc.json()).status);
    const stopped = await waitForJob(h.app, long.id, terminal, 60_000, [w]);
    expect(stopped.status).toBe('cancelled');
    expect(stopped.progress.step).toBeLessThan(400);
    expect(stopped.model).toBeNull();
    const checkpoints = await h.deps.db.prisma.checkpoint.findMany({ where: { jobId: long.id }, orderBy: { step: 'desc' } });
    expect(checkpoints.length).toBeGreaterThan(0);
    // Only the checkpoints still in the artifact store are listed (keepCheckpoints, default 2), each
    // one complete; the store holds no others.
    expect(checkpoints.length).toBeLessThanOrEqual(2);
    const stored = (await h.deps.artifacts.list(`jobs/${long.id}/checkpoints`)).map((o) => o.key).sort();
    expect(stored).toEqual(checkpoints.flatMap((c) => [`${c.key}/checkpoint.json`, `${c.key}/weights.bin`]).sort());
    // The stop checkpoint is at the step the job stopped at.
    expect(checkpoints[0].step).toBe(stopped.progress.step);

    // Give the idle worker time to (wrongly) pick the cancelled job up, then check it never ran.
    await new Promise((r) => setTimeout(r, 1500));
    const never = JobView.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${queued.id}` })).json());
    expect(never).toMatchObject({ status: 'cancelled', attempts: 0, startedAt: null, backend: null });
    expect(await metrics(queued.id)).toEqual([]);
    const again = await h.app.inject({ method: 'POST', url: `/v1/jobs/${long.id}/cancel` });
    expect(again.statusCode).toBe(409);
  });

  it('cancel while it reads a large image folder stops the scan: cancelled before training started, nothing stored', async () => {
    const w = workers[0];
    // 30,000 headers take seconds; the cancel comes at the first `preparing` phase the job shows.
    const folder = path.join(h.settings.dataDir, 'datasets', 'huge');
    const one = path.join(folder, 'a', '0.png');
    fs.mkdirSync(path.dirname(one), { recursive: true });
    fs.writeFileSync(one, Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==', 'base64'));
    for (const c of ['a', 'b']) {
      fs.mkdirSync(path.join(folder, c), { recursive: true });
      for (let i = c === 'a' ? 1 : 0; i < 15_000; i++) fs.linkSync(one, path.join(folder, c, `${i}.png`));
    }
    const job = await post({ name: 'huge', dataset: { type: 'imagefolder', path: 'huge' }, model: { widthMultiplier: 0.35, inputSize: 32 } });
    await waitForJob(h.app, job.id, (j) => j.progress.phase?.name === 'preparing' || terminal(j), 120_000, [w]);
    const rc = await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    // `cancelled` already when the worker, told through Redis at once, stopped the scan and ended
    // the job before the answer read the row back (seen once in CI).
    expect(['cancelling', 'cancelled']).toContain(JobView.parse(rc.json()).status);
    const done = await waitForJob(h.app, job.id, terminal, 120_000, [w]);
    expect(done.status).toBe('cancelled');
    // Claimed and scanning when cancelled, not taken off the queue before that.
    expect(done.startedAt).not.toBeNull();
    // Until the thirty-ninth session the scan ran to its end first, training started, and the
    // stop stored a checkpoint of the untrained model.
    expect(done.dataset).toBeNull();
    expect(done.progress.totalSteps).toBeNull();
    expect(await h.deps.db.prisma.checkpoint.count({ where: { jobId: job.id } })).toBe(0);
    fs.rmSync(folder, { recursive: true, force: true });
  });

  it('cancel during the export stops it and ends the job cancelled, with no model served or left on disk', async () => {
    const w = workers[0];
    const job = await postBigValidationJob('export-cancel', 5);
    const until = Date.now() + 120_000;
    while (!logged(w, job.id, 'exporting the int8 model').length && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(logged(w, job.id, 'exporting the int8 model'), w.output().slice(-2000)).toHaveLength(1);

    const rc = await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    expect(JobView.parse(rc.json()).status).toBe('cancelling');
    await expectCancelledWithoutExport(w, job.id);
    // The export stopped between batches: the worker process lives on (terminating the thread
    // inside ONNX Runtime's native code once aborted it).
    expect(w.proc.exitCode, w.output().slice(-2000)).toBeNull();
    // Every model in the store belongs to a Model row: the cancelled export left nothing behind.
    const rows = await h.deps.db.prisma.model.findMany({ select: { onnxKey: true, manifestKey: true } });
    const stored = (await h.deps.artifacts.list('models')).map((o) => o.key).sort();
    expect(stored).toEqual(rows.flatMap((r) => [r.onnxKey, r.manifestKey]).sort());
  });

  it('cancel after the last step, before the export began (the final evaluation), ends the job cancelled without exporting', async () => {
    const w = workers[0];
    // After its last step the thread evaluates, stores a checkpoint, then exports: a cancel in the
    // evaluation stops it there (the evaluation watches the signal). One in the final
    // checkpoint's upload (milliseconds; not pinned down here) is caught by the runner when the
    // export begins.
    const job = await postBigValidationJob('eval-cancel', 6);
    await waitForJob(h.app, job.id, (j) => j.progress.step === 1 || terminal(j), 120_000, [w]);
    const rc = await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel` });
    expect(JobView.parse(rc.json()).status).toBe('cancelling');
    // The case this test is about: the cancel was in before the export began.
    expect(logged(w, job.id, 'exporting the int8 model'), w.output().slice(-2000)).toEqual([]);
    await expectCancelledWithoutExport(w, job.id);
  });

  it('SIGTERM hands the running job back to the queue; the next worker resumes it', async () => {
    const w1 = workers[0];
    const job = await post(tinyJob(12, { checkpointEverySteps: 2, name: 'handback' }));
    await waitForJob(h.app, job.id, (j) => j.status === 'running' && j.progress.step >= 3, 120_000, [w1]);
    w1.proc.kill('SIGTERM');
    expect(await w1.exited).toBe(0);
    const back = await waitForJob(h.app, job.id, () => true, 1000);
    expect(back.status).toBe('queued');
    const stoppedAt = back.progress.step;
    const cp = await h.deps.db.prisma.checkpoint.findFirst({ where: { jobId: job.id }, orderBy: { step: 'desc' } });
    expect(cp!.step).toBe(stoppedAt);

    const w2 = spawnWorker(env, 'b');
    workers.push(w2);
    const done = await waitForJob(h.app, job.id, terminal, 180_000, [w2]);
    // Resume and training first, so a failure says which part broke; the export comes last.
    expect(w2.output()).toContain(`"resumeFrom":"${cp!.key}"`);
    expect(done.attempts).toBe(2);
    expect(done.progress.step).toBe(12);
    const points = await metrics(job.id);
    expect(points.map((p) => p.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
  });

  it('a job over its wall-clock limit (JOB_TIMEOUT_MS) ends failed with JOB_TIMEOUT and keeps its last checkpoint; resumed, it goes on from it, the job it was fine-tuned from deleted meanwhile', async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    // The job it starts from, and a newer one whose model serves instead, so the first can be deleted.
    const plain = spawnWorker(env, 'plain');
    workers.push(plain);
    const [source, newer] = [await post(tinyJob(4, { name: 'source' })), await post(tinyJob(4, { name: 'newer' }))];
    for (const j of [source, newer]) expect((await waitForJob(h.app, j.id, terminal, 120_000, [plain])).status).toBe('succeeded');
    plain.proc.kill('SIGTERM');
    await plain.exited;
    const w = spawnWorker({ ...env, JOB_TIMEOUT_MS: '6000' }, 'timeout');
    workers.push(w);
    const job = await post({ ...tinyJob(4000, { checkpointEverySteps: 5, name: 'endless' }), init: { fromJob: source.id } });
    const done = await waitForJob(h.app, job.id, terminal, 120_000, [w]);
    expect(done.status).toBe('failed');
    expect(done.error?.code).toBe('JOB_TIMEOUT');
    expect(done.error?.message).toMatch(new RegExp(`JOB_TIMEOUT_MS 6000 ms.*stopped at step ${done.progress.step}, its last checkpoint kept`));
    const ranMs = Date.parse(done.finishedAt!) - Date.parse(done.startedAt!);
    expect(ranMs).toBeGreaterThanOrEqual(6000);
    expect(ranMs).toBeLessThan(6000 + 10_000);
    expect(done.progress.step).toBeLessThan(4000);
    // The checkpoint written as it stopped, in the store, at the step it stopped at.
    const newest = await h.deps.db.prisma.checkpoint.findFirst({ where: { jobId: job.id }, orderBy: { step: 'desc' } });
    expect(newest!.step).toBe(done.progress.step);
    expect((await h.deps.artifacts.list(newest!.key)).map((o) => o.key.slice(newest!.key.length + 1))).toEqual(['checkpoint.json', 'weights.bin']);
    // Failed for good: the queue does not hand it out again.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await waitForJob(h.app, job.id, () => true, 1000)).attempts).toBe(1);

    // Its source can go now: the resume reads only the job's own checkpoint (it used to fetch the
    // source's too, and fail INIT_CHECKPOINT_MISSING).
    expect((await h.app.inject({ method: 'DELETE', url: `/v1/jobs/${source.id}` })).statusCode).toBe(204);

    // Until its user resumes it: the worker goes on from that checkpoint with a new wall-clock
    // limit, trains on and stops at its limit again, the curve one point per step throughout.
    const resumed = await h.app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/resume` });
    expect(JobView.parse(resumed.json())).toMatchObject({ status: 'queued', error: null });
    const again = await waitForJob(h.app, job.id, (j) => j.attempts === 2 && terminal(j), 120_000, [w]);
    expect(w.output()).toContain(`"resumeFrom":"${newest!.key}"`);
    expect(again.error?.code).toBe('JOB_TIMEOUT');
    expect(again.progress.step).toBeGreaterThan(newest!.step);
    const points = await metrics(job.id);
    expect(points.map((p) => p.step)).toEqual(Array.from({ length: again.progress.step }, (_, i) => i + 1));
  });
});
