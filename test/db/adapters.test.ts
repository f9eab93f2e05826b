// Transactions whose end fails. Prisma 6.19 then calls neither the adapter's commit() nor its
// rollback(), so what the transaction held was never given back (prisma/orm#29933): on SQLite the
// adapter's transaction lock, and every later transaction of the process waited for ever (seen on a
// full disk, where SQLite grows its WAL at the COMMIT); on PostgreSQL the pool's client, and once
// the pool was empty every later query waited for ever (seen when connections die mid-transaction,
// as in a restart). src/db/adapters.ts gives them back.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { migratedSqlite } from './migrated-sqlite.js';
import { dropSchema, PG_BASE, pgUrl, uniqueSchema } from './test-databases.js';

/** `work`'s result, or 'still waiting' after `ms`. */
const within = <T>(ms: number, work: Promise<T>) =>
  Promise.race([work, new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), ms))]);

describe('SQLite transactions after a failed COMMIT', () => {
  const sqlite = migratedSqlite('sqlite-adapter');

  it('the COMMIT fails with its own error, keeps nothing, and the transactions after it run', async () => {
    const prisma = sqlite.db.prisma;
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

describe('PostgreSQL transactions whose connection dies', () => {
  const schema = uniqueSchema('adapters');
  let db: Database;
  let admin: pg.Client;
  beforeAll(async () => {
    await migrate(pgUrl(schema));
    db = openDatabase(pgUrl(schema));
    admin = new pg.Client({ connectionString: PG_BASE });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await db?.close();
    await dropSchema(schema);
  });

  it('give their pool clients back: after more cut off than the pool holds, queries and transactions still run', async () => {
    // This file's statements, and no other test's, by a comment in their text.
    const marker = `cut-${schema}`;
    for (let round = 0; round < 3; round++) {
      // Settled as they end: a rejection that came before anything awaited it was reported unhandled.
      const ends = Promise.allSettled(
        Array.from({ length: 3 }, () =>
          db.prisma.$transaction(async (tx) => {
            await tx.$queryRawUnsafe(`SELECT pg_sleep(2) /* ${marker} */`);
          }),
        ),
      );
      await expect
        .poll(
          async () =>
            (await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%${marker}%' AND pid <> pg_backend_pid()`)).rows[0].n,
          { timeout: 5000 },
        )
        .toBe(3);
      // What a restart or a failover does to a transaction's connection.
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%${marker}%' AND pid <> pg_backend_pid()`);
      expect((await ends).map((e) => e.status)).toEqual(['rejected', 'rejected', 'rejected']);
    }
    // 9 clients cut off, 5 in the pool: before, 'still waiting' from the second round on.
    expect(await within(5000, db.prisma.apiKey.count())).toBe(0);
    expect(
      await within(
        5000,
        db.prisma.$transaction(async (tx) => tx.apiKey.count()),
      ),
    ).toBe(0);
  });
});
