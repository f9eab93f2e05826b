// A SQLite transaction whose COMMIT fails. Prisma 6.19 then releases neither the adapter's
// transaction lock nor the connection's open transaction (prisma/orm#29933): every later
// transaction of the process waited forever. Seen on a full disk (SQLite grows its WAL at the
// commit); here the COMMIT fails the same way every time, on a deferred foreign-key check.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { tempSqliteUrl } from './test-databases.js';

/** `work`'s result, or 'still waiting' after `ms`. */
const within = <T>(ms: number, work: Promise<T>) =>
  Promise.race([work, new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), ms))]);

describe('SQLite transactions after a failed COMMIT', () => {
  const sqlite = tempSqliteUrl('sqlite-adapter');
  let db: Database;
  beforeAll(async () => {
    await migrate(sqlite.url);
    db = openDatabase(sqlite.url);
  });
  afterAll(async () => {
    await db?.close();
    fs.rmSync(sqlite.dir, { recursive: true, force: true });
  });

  it('the COMMIT fails with its own error, keeps nothing, and the transactions after it run', async () => {
    const prisma = db.prisma;
    const failing = prisma.$transaction(async (tx) => {
      // Checked at COMMIT instead of at the INSERT: a point of a job that does not exist.
      await tx.$queryRawUnsafe('PRAGMA defer_foreign_keys = ON');
      await tx.metricPoint.create({ data: { jobId: 'no-such-job', step: 1, epoch: 1 } });
    });
    await expect(failing).rejects.toThrow('ForeignKeyConstraintViolation');
    // Before: 'still waiting', for ever.
    expect(
      await within(
        3000,
        prisma.$transaction(async (tx) => tx.metricPoint.count()),
      ),
    ).toBe(0);
    const written = prisma.$transaction(async (tx) => tx.apiKey.create({ data: { id: 'k1', name: 'after', prefix: 'p', keyHash: 'h', scopes: 'train' } }));
    expect(await within(3000, written)).toMatchObject({ name: 'after' });
    // Committed for real: another connection to the file reads it.
    const other = openDatabase(sqlite.url);
    try {
      expect(await other.prisma.apiKey.count({ where: { name: 'after' } })).toBe(1);
    } finally {
      await other.close();
    }
  });
});
