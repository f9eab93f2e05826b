// Two workers race for one job (PostgreSQL, artifacts in PostgreSQL, separate scratch directories).
// The queue hands a job to a second worker when it believes the first one gone (its lock lapsed);
// here both get the same job through two queue entries, which is the same situation made
// deterministic. Exactly one trains; the other is fenced out by the owner token and stops within
// a step; the metric history has every step exactly once.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobView, MetricsPage } from '../../src/jobs/job-view.js';
import { openTrainingQueue, type TrainingQueue } from '../../src/queue/training-queue.js';
import { startHarness, waitReady, type Harness } from '../api/api-harness.js';
import { assertBuilt, FAST_QUEUE_ENV, spawnWorker, tinyJob, waitForJob, type WorkerProc } from './worker-process.js';

const terminal = (j: JobView) => ['succeeded', 'failed', 'cancelled'].includes(j.status);
const lines = (w: WorkerProc, jobId: string) =>
  w
    .output()
    .split('\n')
    .filter((l) => l.includes(jobId))
    .map((l) => JSON.parse(l) as { msg: string; time: number; level: number; step?: number; outcome?: string; resumeStep?: number });

describe('two workers race for one job (PostgreSQL)', () => {
  let h: Harness;
  let second: TrainingQueue;
  const workers: WorkerProc[] = [];
  const dirs: string[] = [];

  beforeAll(async () => {
    assertBuilt();
    h = await startHarness('postgres', { ...FAST_QUEUE_ENV, ARTIFACT_STORE: 'postgres' });
    await waitReady(h);
    // The second worker listens on a queue of its own; the test puts the same job there too.
    second = openTrainingQueue({ ...h.settings, queuePrefix: `${h.settings.queuePrefix}-b` });
    for (const [label, prefix] of [
      ['one', h.settings.queuePrefix],
      ['two', `${h.settings.queuePrefix}-b`],
    ] as const) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), `qatserve-race-${label}-`));
      dirs.push(dir);
      workers.push(spawnWorker({ DATABASE_URL: h.settings.databaseUrl, ARTIFACT_STORE: 'postgres', DATA_DIR: dir, QUEUE_PREFIX: prefix }, label));
    }
    const until = Date.now() + 60_000;
    while (!workers.every((w) => w.output().includes('worker waiting for jobs')) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  });
  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    await second?.close();
    await h?.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const post = async (body: unknown) => JobView.parse((await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: body as object })).json());
  const deliverAgain = (jobId: string) => second.add({ jobId, deploymentId: h.settings.deploymentId! }, { jobId, removeOnComplete: true });
  const steps = async (id: string) =>
    MetricsPage.parse((await h.app.inject({ method: 'GET', url: `/v1/jobs/${id}/metrics?limit=1000` })).json()).points.map((p) => p.step);
  const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

  it('both get the job at once: exactly one trains, the other records nothing', async () => {
    const job = await post(tinyJob(12, { checkpointEverySteps: 3, name: 'race' }));
    await deliverAgain(job.id);
    const done = await waitForJob(h.app, job.id, terminal, 180_000, workers);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.attempts).toBe(2); // two claims; the second took the job over before any write

    const [one, two] = workers.map((w) => lines(w, job.id));
    const trained = [one, two].filter((l) => l.some((x) => x.msg === 'training started'));
    expect(trained).toHaveLength(1);
    const loser = trained[0] === one ? two : one;
    expect(loser.some((x) => x.msg === 'job left the worker' && x.outcome === 'lost')).toBe(true);
    expect(loser.some((x) => x.msg === 'job finished')).toBe(false);

    expect(await steps(job.id)).toEqual(range(12));
    const row = await h.deps.db.prisma.trainingJob.findUniqueOrThrow({ where: { id: job.id } });
    // Every stored checkpoint is the winner's (keys carry the owner token).
    const stored = await h.deps.artifacts.list(`jobs/${job.id}/checkpoints`);
    expect(stored.length).toBeGreaterThan(0);
    for (const o of stored) expect(o.key).toMatch(new RegExp(`-${row.ownerToken!.slice(0, 8)}/`));
  });

  it('a worker whose job is taken over mid-training stops within a step; the history stays continuous', async () => {
    const job = await post(tinyJob(24, { checkpointEverySteps: 4, name: 'takeover' }));
    // Worker one has it (only it listens on the API's queue); past a checkpoint, worker two gets it too.
    const [first, other] = workers as [WorkerProc, WorkerProc];
    await waitForJob(h.app, job.id, async (j) => j.progress.step >= 6, 120_000, workers);
    await deliverAgain(job.id);
    const done = await waitForJob(h.app, job.id, terminal, 180_000, workers);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');

    const took = lines(other, job.id).find((x) => x.msg === 'resuming job');
    expect(took, other.output().slice(-2000)).toBeDefined();
    expect(took!.resumeStep).toBeGreaterThan(0);
    const gone = lines(first, job.id).find((x) => x.msg === 'training stopped: another worker owns the job now; nothing recorded');
    expect(gone, first.output().slice(-2000)).toBeDefined();
    // It stopped at its next step, about when the new owner started (steps here take tens of ms).
    expect(Math.abs(gone!.time - took!.time)).toBeLessThan(2000);
    expect(await steps(job.id)).toEqual(range(24));
    expect(await h.deps.db.prisma.metricPoint.count({ where: { jobId: job.id } })).toBe(24);
  });
});
