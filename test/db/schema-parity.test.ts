// SQLite's schema is the source; PostgreSQL's must hold the same models, and each provider's
// committed migrations, applied in order, must produce exactly the database its schema describes.
// Prisma cannot diff a live database here (its CLI refuses --from-url with a driver adapter), so
// the test builds two databases, one from the migrations and one from Prisma's diff-from-empty
// script, and compares their catalogs: columns, indexes and foreign keys.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { migrate, migrationsDir, readMigrations } from '../../src/db/migrate.js';
import { dropSchema, PG_BASE, pgUrl, tempSqliteUrl, uniqueSchema } from './test-databases.js';

const MARK = '// --- models (keep identical in both schemas) ---';
const models = (p: string) => fs.readFileSync(p, 'utf8').split(MARK)[1];

function diffFromEmpty(provider: 'sqlite' | 'postgres'): string {
  // prisma.config.ts opens its adapter's database: a throwaway file, not the checkout's ./data.
  const sqlite = tempSqliteUrl('diff');
  try {
    return execFileSync('npx', ['prisma', 'migrate', 'diff', '--from-empty', '--to-schema-datamodel', `prisma/${provider}/schema.prisma`, '--script'], {
      encoding: 'utf8',
      env: { ...process.env, DATABASE_URL: provider === 'postgres' ? PG_BASE : sqlite.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } finally {
    fs.rmSync(sqlite.dir, { recursive: true, force: true });
  }
}

const byName = <T extends { name: string }>(rows: T[]) => [...rows].sort((a, b) => a.name.localeCompare(b.name));

/** Tables with their columns (by name: ALTER TABLE appends, so order differs), indexes and keys. */
function sqliteCatalog(file: string) {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_prisma_migrations'")
      .all() as Array<{ name: string }>;
    return byName(tables).map(({ name }) => ({
      name,
      columns: byName(db.pragma(`table_info("${name}")`) as Array<{ name: string }>).map(({ cid: _cid, ...c }: Record<string, unknown>) => c),
      indexes: byName(db.pragma(`index_list("${name}")`) as Array<{ name: string; unique: number; origin: string }>).map((i) => ({
        unique: i.unique,
        origin: i.origin,
        // Auto-named primary-key indexes differ only by their sequence number.
        name: i.origin === 'pk' ? 'pk' : i.name,
        columns: (db.pragma(`index_info("${i.name}")`) as Array<{ name: string }>).map((c) => c.name),
      })),
      foreignKeys: (db.pragma(`foreign_key_list("${name}")`) as Array<Record<string, unknown>>).map(({ id: _id, seq: _seq, ...fk }) => fk),
    }));
  } finally {
    db.close();
  }
}

async function postgresCatalog(schema: string) {
  const client = new pg.Client({ connectionString: PG_BASE });
  await client.connect();
  // Names come back qualified with the schema (sequences, references): compare them unqualified.
  const unqualify = (row: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'string' ? v.replaceAll(`${schema}.`, '') : v]));
  const q = async (sql: string) => (await client.query(sql, [schema])).rows.map(unqualify);
  try {
    return {
      columns: await q(`SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
        WHERE table_schema = $1 AND table_name <> '_prisma_migrations' ORDER BY table_name, column_name`),
      indexes: await q(`SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename <> '_prisma_migrations'
        ORDER BY tablename, indexname`),
      constraints: await q(`SELECT c.conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
        JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.conname NOT LIKE '_prisma_migrations%' ORDER BY 1`),
    };
  } finally {
    await client.end();
  }
}

describe('prisma schemas', () => {
  it('PostgreSQL holds the same models as the SQLite source', () => {
    const src = models('prisma/sqlite/schema.prisma');
    expect(src.length).toBeGreaterThan(500);
    expect(models('prisma/postgres/schema.prisma')).toBe(src);
  });

  it('both providers have the same migrations, each a directory with its migration.sql', () => {
    // readMigrations skips a directory without migration.sql; here such a directory is an error.
    const dirs = (provider: 'sqlite' | 'postgres') =>
      fs
        .readdirSync(migrationsDir(provider), { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort();
    const sqlite = dirs('sqlite');
    expect(sqlite.length).toBeGreaterThan(0);
    expect(dirs('postgres')).toEqual(sqlite);
    expect(readMigrations('sqlite').map((m) => m.name)).toEqual(sqlite);
    expect(readMigrations('postgres').map((m) => m.name)).toEqual(sqlite);
  });

  it('sqlite migrations add up to the schema', async () => {
    const migrated = tempSqliteUrl('parity-migrated');
    const fromSchema = tempSqliteUrl('parity-schema');
    try {
      expect((await migrate(migrated.url)).applied).toEqual(readMigrations('sqlite').map((m) => m.name));
      const file = fromSchema.url.slice('file:'.length);
      const db = new BetterSqlite3(file);
      db.exec(diffFromEmpty('sqlite'));
      db.close();
      const expected = sqliteCatalog(file);
      expect(expected.map((t) => t.name)).toContain('TrainingJob');
      expect(sqliteCatalog(migrated.url.slice('file:'.length))).toEqual(expected);
    } finally {
      fs.rmSync(migrated.dir, { recursive: true, force: true });
      fs.rmSync(fromSchema.dir, { recursive: true, force: true });
    }
  });

  it('postgres migrations add up to the schema', async () => {
    const migrated = uniqueSchema('parity_m');
    const fromSchema = uniqueSchema('parity_s');
    const client = new pg.Client({ connectionString: PG_BASE });
    await client.connect();
    try {
      expect((await migrate(pgUrl(migrated))).applied).toEqual(readMigrations('postgres').map((m) => m.name));
      await client.query(`CREATE SCHEMA "${fromSchema}"`);
      await client.query(`SET search_path TO "${fromSchema}"`);
      await client.query(diffFromEmpty('postgres').replace(/^CREATE SCHEMA IF NOT EXISTS "public";$/m, ''));
      const expected = await postgresCatalog(fromSchema);
      expect(expected.columns.length).toBeGreaterThan(20);
      expect(await postgresCatalog(migrated)).toEqual(expected);
    } finally {
      await client.end();
      await dropSchema(migrated);
      await dropSchema(fromSchema);
    }
  });
});
