// One SQLite library per process. `qatserve migrate` (src/db/migrate.ts) opens the file with
// better-sqlite3 and the Prisma adapter opens it with its own dependency; when the two resolved to
// different versions (12 and 11), a process held two copies of SQLite, whose POSIX locks do not see
// each other: a connection of one copy closing made the other's open connection read a stale view
// (a job-delete bench on SQLite ended in SQLITE_CORRUPT, "database disk image is malformed").
// package.json's `overrides` gives the adapter the project's better-sqlite3.
import fs from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { tempSqliteUrl } from './test-databases.js';

describe('SQLite in one process', () => {
  const { url, dir } = tempSqliteUrl('one-sqlite');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("Prisma's open connection sees rows that another connection in the process wrote and closed", async () => {
    await migrate(url);
    const db = openDatabase(url);
    try {
      await db.prisma.trainingJob.create({ data: { id: 'job', name: 'job', status: 'cancelled', config: '{}' } });
      for (let i = 1; i <= 3; i++) {
        const other = new BetterSqlite3(url.replace(/^file:/, ''));
        other.prepare(`INSERT INTO JobEvent (jobId, type, payload) VALUES ('job', 'progress', '{}')`).run();
        other.close();
        expect(await db.prisma.jobEvent.count()).toBe(i);
      }
    } finally {
      await db.close();
    }
  });
});
