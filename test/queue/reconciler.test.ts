// The reconciler against real Redis (Bull) and a real database: rows whose queue entry is missing
// or finished are repaired, rows the queue still holds are left alone, and of several API
// replicas only the leader acts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobView } from '../../src/jobs/job-view.js';
import { reconcile, startReconciler } from '../../src/queue/reconciler.js';
import { openTrainingQueue, type TrainingQueue } from '../../src/queue/training-queue.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from '../api/api-harness.js';

const log = { info() {}, warn() {}, error() {} };

describe('reconciler', () => {
  let h: Harness;
  let queue: TrainingQueue;
  beforeAll(async () => {
    h = await startHarness('sqlite');
    await waitReady(h);
    queue = openTrainingQueue(h.settings);
  });
  afterAll(async () => {
    await queue?.close();
    await h?.close();
  });

  const prisma = () => h.deps.db.prisma;
  /** A row as a crash or a lost Redis entry leaves it: no queue entry behind it. */
  const row = async (id: string, status: string) => {
    await prisma().trainingJob.create({ data: { id, name: 'r', status, config: JSON.stringify({}), ownerToken: status === 'queued' ? null : `tok-${id}` } });
    return id;
  };
  const status = async (id: string) => prisma().trainingJob.findUniqueOrThrow({ where: { id } });
  const suffix = Date.now().toString(36);

  it('re-enqueues queued rows without a live entry and running ones whose entry is missing; ends those the queue finished', async () => {
    const crashed = await row(`crashed-${suffix}`, 'queued'); // the API died between insert and enqueue
    const gaveUp = await row(`gave-up-${suffix}`, 'queued'); // the queue failed its entry
    await h.deps.queue.enqueue(gaveUp, 3); // behind two of another key's jobs
    const taken = (await queue.getNextJob())!;
    expect(taken.id).toBe(gaveUp);
    await taken.discard();
    await taken.moveToFailed({ message: 'attempts exhausted' });
    expect(await h.deps.queue.entryState(gaveUp)).toBe('failed');
    const orphan = await row(`orphan-${suffix}`, 'running'); // Redis lost the entry of a running job whose worker died too
    const dropped = await row(`dropped-${suffix}`, 'running'); // the queue failed its entry unseen
    await h.deps.queue.enqueue(dropped);
    const droppedEntry = (await queue.getNextJob())!;
    expect(droppedEntry.id).toBe(dropped);
    await droppedEntry.discard();
    await droppedEntry.moveToFailed({ message: 'job stalled more than allowable limit' });
    const winding = await row(`winding-${suffix}`, 'cancelling');
    const healthy = JobView.parse((await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinySynthetic })).json()).id;
    const resumed = await row(`resumed-${suffix}`, 'running'); // its worker died; the entry waits for the next one
    await h.deps.queue.enqueue(resumed);

    // Within the grace period nothing is touched (a create may be about to enqueue).
    expect(await reconcile(prisma(), h.deps.queue, { graceMs: 60_000, log })).toEqual({ requeued: [], failed: [], cancelled: [], garbage: 0 });

    const report = await reconcile(prisma(), h.deps.queue, { graceMs: 0, log });
    expect(report.requeued.sort()).toEqual([crashed, gaveUp, orphan].sort());
    expect(report.failed).toEqual([dropped]);
    expect(report.cancelled).toEqual([winding]);
    expect(await h.deps.queue.entryState(crashed)).toBe('waiting');
    expect(await h.deps.queue.entryState(gaveUp)).toBe('waiting');
    expect(await h.deps.queue.priorityOf!(gaveUp)).toBe(3); // its place kept, not the front
    // The next worker claims it over the dead one's token and resumes it from its checkpoint.
    expect(await status(orphan)).toMatchObject({ status: 'running', errorCode: null });
    expect(await h.deps.queue.entryState(orphan)).toBe('waiting');
    expect(await status(dropped)).toMatchObject({ status: 'failed', errorCode: 'QUEUE_ENTRY_LOST', ownerToken: null });
    expect((await status(dropped)).errorMessage).toMatch(/queue entry is failed while the job was running/);
    expect(await status(winding)).toMatchObject({ status: 'cancelled', errorCode: null });
    expect(await status(healthy)).toMatchObject({ status: 'queued' });
    expect(await status(resumed)).toMatchObject({ status: 'running' });

    // A second pass finds nothing left to do.
    expect(await reconcile(prisma(), h.deps.queue, { graceMs: 0, log })).toEqual({ requeued: [], failed: [], cancelled: [], garbage: 0 });
  });

  it('acts on one replica at a time; another takes over when the leader stops', async () => {
    const deps = { settings: h.settings, prisma: prisma(), queue: h.deps.queue, log, graceMs: 0 };
    const a = startReconciler(deps);
    const b = startReconciler(deps);
    try {
      let reports: Array<unknown> = [];
      for (let i = 0; i < 50; i++) {
        reports = await Promise.all([a.runOnce(), b.runOnce()]);
        if (reports.some((r) => r !== null)) break;
        await new Promise((r) => setTimeout(r, 50)); // Redis connections still coming up
      }
      expect(reports.filter((r) => r !== null)).toHaveLength(1);
      const leader = reports[0] !== null ? a : b;
      const follower = leader === a ? b : a;
      // Rounds later, the same one leads.
      expect(await follower.runOnce()).toBeNull();
      expect(await leader.runOnce()).not.toBeNull();
      await leader.stop();
      expect(await follower.runOnce()).not.toBeNull();
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
