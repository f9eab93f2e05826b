// Two deployments misconfigured onto one queue prefix (QUEUE_PREFIX set to the same value for
// both; the default derives a prefix per deployment and never collides, see multi-machine.test.ts).
// A worker that receives another deployment's job, or one its database has no row for, must not
// acknowledge it: it fails the queue entry with an error naming both deployments, logged at error
// level, and leaves the other deployment's row alone.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { JobView } from '../../src/jobs/job-view.js';
import { openTrainingQueue, type TrainingQueue } from '../../src/queue/training-queue.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from '../api/api-harness.js';
import { assertBuilt, spawnWorker, type WorkerProc } from './worker-process.js';

describe("a worker given a job that is not its deployment's", () => {
  let one: Harness;
  let two: Harness;
  let w: WorkerProc;
  let queue: TrainingQueue;
  const shared = `qs-shared-${process.pid}-${Date.now().toString(36)}`;

  beforeAll(async () => {
    assertBuilt();
    one = await startHarness('sqlite', { QUEUE_PREFIX: shared });
    two = await startHarness('sqlite', { QUEUE_PREFIX: shared });
    await Promise.all([waitReady(one), waitReady(two)]);
    queue = openTrainingQueue(two.settings);
    w = spawnWorker({ DATABASE_URL: two.settings.databaseUrl, DATA_DIR: two.settings.dataDir, QUEUE_PREFIX: shared }, 'two');
  });
  afterAll(async () => {
    if (w?.proc.exitCode === null) w.proc.kill('SIGKILL');
    await queue?.close();
    await one?.close();
    await two?.close();
  });

  const failedEntry = async (jobId: string) => {
    for (let i = 0; i < 300; i++) {
      const job = await queue.getJob(jobId);
      // Re-read after the state check: the entry read before Bull moved it to failed has no
      // failedReason yet.
      if (job && (await job.getState()) === 'failed') return (await queue.getJob(jobId))!;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`entry ${jobId} never failed:\n${w.output().slice(-2000)}`);
  };
  const errorLines = () =>
    w
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; jobId?: string });
  // The worker's log line for a job, once it has come through its stdout pipe: Bull marks the entry
  // failed before the line is read here (CI once read the output a moment too early).
  const loggedFor = (jobId: string) => vi.waitUntil(() => errorLines().find((l) => l.jobId === jobId), { timeout: 5000, interval: 100 });

  it('fails the entry naming both deployments, at error level, and never touches the row', async () => {
    expect(one.settings.deploymentId).not.toBe(two.settings.deploymentId);
    const job = JobView.parse((await one.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinySynthetic })).json());
    const entry = await failedEntry(job.id);
    expect(entry.failedReason).toContain(`not a job of deployment ${two.settings.deploymentId}`);
    expect(entry.failedReason).toContain(`queued by deployment ${one.settings.deploymentId}`);
    expect(entry.failedReason).toContain(`queue prefix "${shared}"`);
    expect(entry.attemptsMade).toBe(1); // not retried into another worker of the wrong deployment
    const logged = await loggedFor(job.id);
    expect(logged).toMatchObject({ level: 50, msg: entry.failedReason });
    // Deployment one's job is untouched: still queued, never started. (Its reconciler puts it on the
    // queue again; the fix is a prefix per deployment.)
    expect(await one.app.inject({ method: 'GET', url: `/v1/jobs/${job.id}` }).then((r) => JobView.parse(r.json()))).toMatchObject({
      status: 'queued',
      attempts: 0,
      startedAt: null,
    });
  });

  it('fails an entry of its own deployment that has no row, too', async () => {
    const ghost = `ghost-${Date.now().toString(36)}`;
    await queue.add({ jobId: ghost, deploymentId: two.settings.deploymentId! }, { jobId: ghost });
    const entry = await failedEntry(ghost);
    expect(entry.failedReason).toContain(`this deployment's database has no row for it`);
    expect(await loggedFor(ghost)).toMatchObject({ level: 50 });
  });
});
