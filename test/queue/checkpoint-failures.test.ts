// Checkpoints the artifact store refuses for a while (PostgreSQL away or read-only, a full disk):
// training goes on and each next checkpoint tries again. Measured by hand before: a read-only
// PostgreSQL for 45 s under a fast job logged 34 error lines, each with its stack. Now one when
// it starts and one when a checkpoint is stored again.
import { describe, expect, it } from 'vitest';
import { TrainingConfig } from '../../src/config/training-config.js';
import { insertQueued } from '../../src/jobs/job-lifecycle.js';
import type { Logger } from '../../src/logger.js';
import { startJob } from '../../src/queue/job-runner.js';
import { overriding } from '../../src/overriding.js';
import { migratedSqlite } from '../db/migrated-sqlite.js';
import { standInContext } from './fixtures/runner-context.js';

describe('checkpoints the artifact store refuses for a while', () => {
  const sqlite = migratedSqlite('checkpoint-failures');

  it('are said once when the refusals start and once when one is stored again; the thread hears of each', async () => {
    const { db } = sqlite;
    await insertQueued(db.prisma, { id: 'job-1', name: 'ckpt', config: TrainingConfig.parse({ dataset: { type: 'synthetic' } }) });
    const lines: { level: string; msg: string }[] = [];
    const at = (level: string) => (a: object | string, b?: string) => lines.push({ level, msg: typeof a === 'string' ? a : (b ?? '') });
    const log: Logger = { info: at('info'), warn: at('warn'), error: at('error') };
    const ctx = standInContext(db.prisma, './checkpoint-thread.mjs', log);
    // The first three uploads fail as PostgreSQL's do when it is read-only.
    let refusals = 3;
    const store = overriding(ctx.store, {
      begin: (prefix: string) => {
        const write = ctx.store.begin(prefix);
        if (refusals-- <= 0) return write;
        const refused = Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' });
        return { put: () => Promise.reject(refused), commit: () => write.commit(), abort: () => write.abort() };
      },
    });
    const job = startJob({ ...ctx, store }, 'job-1');
    await job.done;
    expect(lines.find((l) => l.msg.startsWith('stored '))?.msg).toBe('stored [false,false,false,true,true,true]');
    const about = lines.filter((l) => l.msg.includes('checkpoint'));
    expect(about).toEqual([
      { level: 'error', msg: 'storing checkpoints in the fs artifact store failed; retrying' },
      { level: 'info', msg: expect.stringMatching(/^storing checkpoints in the fs artifact store works again, after 3 failed attempts in \d+ s$/) },
    ]);
  });
});
