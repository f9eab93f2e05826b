// A worker killed with SIGKILL mid-training: Bull's stalled check re-queues the job, the next
// worker resumes it from its newest checkpoint, and the metric history has every step exactly
// once. On PostgreSQL (the other provider is covered by job-lifecycle.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobView, MetricsPage } from '../../src/jobs/job-view.js';
import { startHarness, waitReady, type Harness } from '../api/api-harness.js';
import { assertBuilt, FAST_QUEUE_ENV, killWorker, spawnWorker, tinyJob, waitForJob, type WorkerProc } from './worker-process.js';

describe('worker killed mid-training (PostgreSQL)', () => {
  let h: Harness;
  const workers: WorkerProc[] = [];

  beforeAll(async () => {
    assertBuilt();
    h = await startHarness('postgres', FAST_QUEUE_ENV);
    await waitReady(h);
  });
  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    await h?.close();
  });

  it('resumes from the checkpoint and succeeds with no duplicated or missing steps', async () => {
    // Every step written at once: with the default interval (a second) the steps between two
    // checkpoints of this tiny job can reach the database together with the next checkpoint, so
    // "past a checkpoint" may never be seen (a CI run on 2026-12-02 ran into the test's timeout).
    const env = { DATABASE_URL: h.settings.databaseUrl, DATA_DIR: h.settings.dataDir, QUEUE_PREFIX: h.settings.queuePrefix, PROGRESS_WRITE_INTERVAL_MS: '0' };
    const w1 = spawnWorker(env, 'killed');
    workers.push(w1);
    const res = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(12, { checkpointEverySteps: 3 }) });
    const job = JobView.parse(res.json());

    // Kill after a checkpoint and at least one more step, so the dead run wrote points the next
    // run must redo (and not duplicate).
    await waitForJob(
      h.app,
      job.id,
      async (j) => {
        const c = await h.deps.db.prisma.checkpoint.findFirst({ where: { jobId: job.id }, orderBy: { step: 'desc' } });
        return (c?.step ?? 0) >= 3 && j.progress.step > c!.step;
      },
      120_000,
      [w1],
    );
    await killWorker(w1);
    const atKill = JobView.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}` })).json());
    expect(atKill.status).toBe('running'); // nobody told the database; Bull's lock will expire
    const newest = await h.deps.db.prisma.checkpoint.findFirst({ where: { jobId: job.id }, orderBy: { step: 'desc' } });

    const w2 = spawnWorker(env, 'rescuer');
    workers.push(w2);
    const done = await waitForJob(h.app, job.id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 180_000, [w2]);
    expect(done.attempts).toBe(2);
    expect(done.progress.step).toBe(12);
    // It resumed (not restarted): the rescuer started from the newest checkpoint on record.
    expect(w2.output()).toContain(`"resumeFrom":"${newest!.key}"`);
    expect(w2.output()).toMatch(new RegExp(`"startStep":${newest!.step}`));

    const page = MetricsPage.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/metrics?limit=1000` })).json());
    expect(page.points.map((p) => p.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    const rows = await h.deps.db.prisma.metricPoint.count({ where: { jobId: job.id } });
    expect(rows).toBe(12);
    // Last, so a failure above points at resume and one here at the export after it.
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.model).not.toBeNull();
  });

  it('a job whose worker keeps dying ends failed with WORKER_LOST once the stall limit is spent', async () => {
    // MAX_STALLED_COUNT=0: the first stall is already one too many, so Bull fails the job instead
    // of handing it to the next worker, and that worker must record it in the database.
    // Only workers with this limit may see the job: the rescuer above would re-queue it.
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    const env = { DATABASE_URL: h.settings.databaseUrl, DATA_DIR: h.settings.dataDir, QUEUE_PREFIX: h.settings.queuePrefix, MAX_STALLED_COUNT: '0' };
    const w1 = spawnWorker(env, 'lost-1');
    workers.push(w1);
    const res = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(400, { name: 'lost' }) });
    const job = JobView.parse(res.json());
    await waitForJob(h.app, job.id, (j) => j.status === 'running' && j.progress.step >= 1, 120_000, [w1]);
    await killWorker(w1);

    const w2 = spawnWorker(env, 'lost-2');
    workers.push(w2);
    const done = await waitForJob(h.app, job.id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 120_000, [w2]);
    expect(done.status, w2.output().split('\n').slice(0, 30).join('\n')).toBe('failed');
    expect(done.error?.code).toBe('WORKER_LOST');
    expect(done.error?.message).toMatch(
      /^its worker died 1 time while running it \(it had reached step [1-9]\d*\), so it was given up \(MAX_STALLED_COUNT 0\)\. A job that ends its worker every time is most often more than the machine's memory holds: /,
    );
    expect(done.attempts).toBe(1); // it was never started again
    expect(done.finishedAt).not.toBeNull();
  }, 300_000);
});
