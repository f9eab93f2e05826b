// What an operator reads when the database fails. Prisma's default message quotes the code around
// the failing call, which in the bundled client is tens of kilobytes of minified JavaScript: every
// warn line of a PostgreSQL restart was 33 KB. The message must be the cause, in a line.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/database.js';
import { isSqliteDiskFailure, sqliteFailureLine } from '../../src/db/db-errors.js';
import { tempSqliteUrl } from './test-databases.js';

async function failure(run: () => Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await run();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('the query succeeded');
}

describe('database errors', () => {
  const { url, dir } = tempSqliteUrl('database-errors');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('an unreachable PostgreSQL server fails with its cause in a few words', async () => {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    const db = openDatabase('postgresql://postgres@127.0.0.1:1/test');
    try {
      const err = await failure(() => db.prisma.trainingJob.findMany({ take: 1 }));
      expect(err.code).toBe('P1001');
      expect(err.message).toMatch(/Can't reach database server at 127\.0\.0\.1:1/);
      expect(err.message.length).toBeLessThan(300);
    } finally {
      await db.close().catch(() => {});
    }
  });

  it('a SQLite file without the schema fails with the missing table named, not the calling code', async () => {
    const db = openDatabase(url);
    try {
      const err = await failure(() => db.prisma.trainingJob.findMany({ take: 1 }));
      expect(err.message).toMatch(/TrainingJob/);
      expect(err.message).not.toMatch(/invocation in/);
      expect(err.message.length).toBeLessThan(300);
      expect(isSqliteDiskFailure(err)).toBe(false);
    } finally {
      await db.close();
    }
  });

  it("a SQLite write refused by the file's disk is told as such, in a transaction or not, with SQLite's code in its line", async () => {
    // query_only makes SQLite refuse writes as a read-only file does (SQLITE_READONLY); the API's
    // answer to a disk turned read-only under it is tested in test/integration/read-only-root.test.ts.
    const db = openDatabase(url);
    try {
      await db.prisma.$executeRawUnsafe('PRAGMA query_only = 1');
      const write = (q: { $executeRawUnsafe: (sql: string) => Promise<number> }) => q.$executeRawUnsafe('CREATE TABLE t (x INTEGER)');
      for (const err of [await failure(() => write(db.prisma)), await failure(() => db.prisma.$transaction((tx) => write(tx)))]) {
        expect(isSqliteDiskFailure(err)).toBe(true);
        expect(sqliteFailureLine(err)).toBe('SQLITE_READONLY: attempt to write a readonly database');
      }
    } finally {
      await db.close();
    }
  });
});
