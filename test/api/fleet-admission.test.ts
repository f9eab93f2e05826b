// Admission against the fleet's memory budgets (real Redis, workers as their Redis entries): a job
// is held to the largest budget of the live workers and of those away (restarting) for less than
// WORKER_RESTART_GRACE_S, so a rolling restart of the one large worker does not turn its jobs away.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorBody } from '../../src/api/error-body.js';
import { WorkerList, writeEntry, type WorkerView } from '../../src/queue/worker-registry.js';
import { startHarness, waitReady, type Harness } from './api-harness.js';

const MiB = 2 ** 20;

describe('admission against live and away workers', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness('sqlite', { RATE_LIMIT_PER_MINUTE: '0' });
    await waitReady(h);
  });
  afterAll(async () => {
    await h?.close();
  });

  const entry = (id: string, budgetMiB: number, seenSecondsAgo: number): WorkerView => {
    const at = new Date(Date.now() - seenSecondsAgo * 1000).toISOString();
    return {
      ...{ id, host: id.split(':')[0], pid: 1, state: 'idle', jobId: null, reason: null, trainThreads: 2 },
      ...{ memoryBudgetBytes: budgetMiB * MiB, seat: id, disk: { freeBytes: 1e12, totalBytes: 2e12 }, startedAt: at, since: at, seenAt: at },
    };
  };
  /** A worker's entry as its beacon writes it: live, or its last-seen copy only (`live` false). */
  const put = (w: WorkerView, live: boolean) => writeEntry(h.deps.redis, h.settings.queuePrefix, w, live);
  // 0.35@32 at batch 4 is estimated at 158 MiB, 1.0@64 at batch 16 at 343 MiB.
  const post = (widthMultiplier: number, inputSize: number, batchSize: number) =>
    h.app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { dataset: { type: 'synthetic', classes: 2, samplesPerClass: 8 }, model: { widthMultiplier, inputSize }, training: { batchSize } },
    });

  it('holds a job to the largest budget of the live workers and those away for less than WORKER_RESTART_GRACE_S, says whose, and lists the away ones', async () => {
    // A small worker is live; the large one restarted 30 s ago and has not come back yet.
    await put(entry('small:1', 64, 1), true);
    await put(entry('large:1', 256, 30), false);

    // GET /v1/workers lists the away one apart, as its last entry said.
    const listed = WorkerList.parse((await h.app.inject({ method: 'GET', url: '/v1/workers' })).json());
    expect([listed.workers.map((w) => w.id), listed.away.map((w) => [w.id, w.memoryBudgetBytes])]).toEqual([['small:1'], [['large:1', 256 * MiB]]]);

    const fitsLarge = await post(0.35, 32, 4);
    expect(fitsLarge.statusCode, fitsLarge.body).toBe(201);
    const tooLarge = await post(1.0, 64, 16);
    const refused = ErrorBody.parse(tooLarge.json()).error;
    expect([tooLarge.statusCode, refused.code]).toEqual([400, 'JOB_TOO_LARGE']);
    expect(refused.issues?.[0].message).toContain(
      "the worker's budget is 256 MiB (the largest budget of the 1 live worker and the 1 worker away for less than WORKER_RESTART_GRACE_S, each held to its machine's memory)",
    );

    // Away for longer than the grace period (600 s by default): only the live worker counts.
    await put(entry('large:1', 256, 601), false);
    expect(WorkerList.parse((await h.app.inject({ method: 'GET', url: '/v1/workers' })).json()).away).toEqual([]);
    const gone = await post(0.35, 32, 4);
    expect([gone.statusCode, ErrorBody.parse(gone.json()).error.issues?.[0].message]).toEqual([
      400,
      expect.stringContaining("the worker's budget is 64 MiB (the largest budget of the 1 live worker, each held to its machine's memory)"),
    ]);
  });
});
