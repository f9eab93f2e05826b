// A cancel or the time limit during a job's export: the runner asks the training thread to stop
// the export (`stop-export`) and waits for it, since terminating a thread while ONNX Runtime's
// native code runs in it aborts the whole worker process. Only a thread that does not answer
// within the grace period is terminated. The thread here is a stand-in that sits in its export
// (fixtures/export-stop-thread.mjs); the database is real SQLite.
import { describe, expect, it } from 'vitest';
import { insertQueued, requestCancel } from '../../src/jobs/job-lifecycle.js';
import { reconcile } from '../../src/queue/reconciler.js';
import { TrainingConfig } from '../../src/config/training-config.js';
import { startJob } from '../../src/queue/job-runner.js';
import type { Logger } from '../../src/logger.js';
import { migratedSqlite } from '../db/migrated-sqlite.js';
import { standInContext } from './fixtures/runner-context.js';

const GRACE_MS = 1500;

describe('stopping a job during its export', () => {
  const sqlite = migratedSqlite('export-stop');
  let n = 0;

  /** Runs a queued job whose thread answers `stop-export` as `mode` says; `said` finds a line of its log. */
  const run = async (mode: 'obey' | 'ignore', jobTimeoutMs = 60_000, heartbeatMs?: number) => {
    const id = `job-${++n}`;
    await insertQueued(sqlite.db.prisma, { id, name: mode, config: TrainingConfig.parse({ name: mode, dataset: { type: 'synthetic' } }) });
    const lines: string[] = [];
    let inExport!: () => void;
    const exporting = new Promise<void>((resolve) => (inExport = resolve));
    const note = (a: object | string, b?: string) => {
      const msg = typeof a === 'string' ? a : (b ?? '');
      lines.push(msg);
      if (msg.includes('exporting the int8 model')) inExport();
    };
    const log: Logger = { info: note, warn: note, error: note };
    const job = startJob(standInContext(sqlite.db.prisma, './export-stop-thread.mjs', log, { jobTimeoutMs, exportStopGraceMs: GRACE_MS, heartbeatMs }), id);
    await exporting;
    const row = () => sqlite.db.prisma.trainingJob.findUniqueOrThrow({ where: { id } });
    return { id, job, row, said: (text: string) => lines.find((l) => l.includes(text)) };
  };

  it('a cancel lets the export end at its next batch, and the job is cancelled with no model', async () => {
    const { id, job, row, said } = await run('obey');
    await requestCancel(sqlite.db.prisma, id);
    const asked = Date.now();
    job.abort('cancel');
    expect(await job.done).toBe('cancelled');
    // The thread finished its batch (200 ms) and said so: it was not terminated under it.
    expect(said('thread received stop-export')).toBeDefined();
    expect(said('export stopped at the end of its batch')).toBeDefined();
    expect(Date.now() - asked).toBeLessThan(GRACE_MS);
    expect((await row()).status).toBe('cancelled');
    expect(await sqlite.db.prisma.model.count({ where: { jobId: id } })).toBe(0);
  });

  it('the time limit stops the export the same way and fails the job with JOB_TIMEOUT', async () => {
    const { job, row, said } = await run('obey', 1000);
    expect(await job.done).toBe('failed');
    expect(said('export stopped at the end of its batch')).toBeDefined();
    const r = await row();
    expect([r.status, r.errorCode]).toEqual(['failed', 'JOB_TIMEOUT']);
  });

  it('a thread that does not stop is terminated after the grace period, and the job still ends cancelled', async () => {
    const { id, job, row, said } = await run('ignore');
    await requestCancel(sqlite.db.prisma, id);
    const asked = Date.now();
    job.abort('cancel');
    expect(await job.done).toBe('cancelled');
    expect(said('thread received stop-export')).toBeDefined();
    expect(Date.now() - asked).toBeGreaterThanOrEqual(GRACE_MS - 50);
    expect((await row()).status).toBe('cancelled');
  });

  it('a job quiet in its export keeps its row fresh for the reconciler and hears a cancel written only to the row', async () => {
    const { id, job, row } = await run('obey', 60_000, 100);
    const before = (await row()).updatedAt.getTime();
    await new Promise((r) => setTimeout(r, 600));
    expect((await row()).updatedAt.getTime()).toBeGreaterThan(before);
    // Its queue entry gone (Redis lost it): a row written within the grace is not the reconciler's.
    const quiet = { info: () => {}, warn: () => {}, error: () => {} };
    const queue = { entryState: async () => null, requeue: async () => {} };
    const report = await reconcile(sqlite.db.prisma, queue, { graceMs: 400, log: quiet });
    expect(report.failed).not.toContain(id);
    expect((await row()).status).toBe('running');
    // A cancel whose Redis message never came: the row says so, and the next heartbeat hears it.
    await requestCancel(sqlite.db.prisma, id);
    expect(await job.done).toBe('cancelled');
    expect((await row()).status).toBe('cancelled');
  });
});
