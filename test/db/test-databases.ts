// Real databases for tests: a fresh SQLite file, or a fresh PostgreSQL schema per run (so runs
// and files never see each other's rows). PostgreSQL at 127.0.0.1:5432, database `test`, trust auth.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export const PG_BASE = process.env.TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

export function tempSqliteUrl(label: string): { url: string; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `qatserve-${label}-`));
  return { url: `file:${path.join(dir, 'qatserve.db')}`, dir };
}

export function uniqueSchema(label: string): string {
  return `t_${label}_${process.pid}_${Date.now().toString(36)}`.toLowerCase();
}

/** `base` (a PostgreSQL URL without query; default PG_BASE) on `schema`. */
export function pgUrl(schema: string, base = PG_BASE): string {
  return `${base}?schema=${schema}`;
}

/** Runs `sql` on PG_BASE over a connection of its own (DDL, roles: what no test's app should do). */
export async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_BASE });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await adminQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}
