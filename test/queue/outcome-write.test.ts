// A job's outcome that cannot be written (the database away, or its disk full, at that moment).
// The runner decides the outcome when the training thread says how the job ended, and returns it
// once the thread has exited. Until the forty-fifth session a write that failed in between was a
// rejection nobody had handled yet: Node ended the whole worker process (measured: a disk that
// filled up under `qatserve serve` crashed the worker as it handed its job back). Now the runner's
// caller gets the error, as from any database trouble while a job runs, and retries the job later.
import { describe, expect, it } from 'vitest';
import { insertQueued } from '../../src/jobs/job-lifecycle.js';
import { TrainingConfig } from '../../src/config/training-config.js';
import { startJob } from '../../src/queue/job-runner.js';
import { overriding } from '../../src/overriding.js';
import type { Logger } from '../../src/logger.js';
import { migratedSqlite } from '../db/migrated-sqlite.js';
import { standInContext } from './fixtures/runner-context.js';

describe("a job's outcome that cannot be written", () => {
  const sqlite = migratedSqlite('outcome-write');

  it("reaches the runner's caller as its error, not Node's unhandled-rejection handler, and the row stays the worker's", async () => {
    const { db } = sqlite;
    await insertQueued(db.prisma, { id: 'job-1', name: 'diverges', config: TrainingConfig.parse({ dataset: { type: 'synthetic' } }) });
    // Transactions fail once the thread says it is about to fail the job, as on a database gone away.
    let away = false;
    const transaction = db.prisma.$transaction.bind(db.prisma) as (...args: unknown[]) => Promise<unknown>;
    const prisma = overriding(db.prisma, {
      $transaction: (...args: unknown[]) => (away ? Promise.reject(new Error('database unreachable')) : transaction(...args)),
    });
    const note = (a: object | string, b?: string) => {
      if ((typeof a === 'string' ? a : b) === 'about to fail') away = true;
    };
    const log: Logger = { info: note, warn: note, error: note };
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const job = startJob(standInContext(prisma, './failing-thread.mjs', log), 'job-1');
      await expect(job.done).rejects.toThrow('database unreachable');
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    // Nothing recorded the failure: the row is still the worker's, for Bull's retry to resume.
    const row = await db.prisma.trainingJob.findUniqueOrThrow({ where: { id: 'job-1' } });
    expect([row.status, row.errorCode]).toEqual(['running', null]);
  });
});
