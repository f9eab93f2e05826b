// A migrated SQLite file of a describe block's own, through vitest's hooks. Apart from
// test-databases.ts, which benches import too (bench/progress-write.ts) and which needs no test runner.
import fs from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { tempSqliteUrl } from './test-databases.js';

/**
 * A migrated SQLite file of a describe block's own: opened before its tests, closed and removed
 * after them. `db` is read inside the tests (it is opened in beforeAll).
 */
export function migratedSqlite(label: string): { readonly url: string; readonly db: Database } {
  const { url, dir } = tempSqliteUrl(label);
  let db: Database | null = null;
  beforeAll(async () => {
    await migrate(url);
    db = openDatabase(url);
  });
  afterAll(async () => {
    await db?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    url,
    get db() {
      if (!db) throw new Error(`migratedSqlite(${label}): read db inside a test, after beforeAll`);
      return db;
    },
  };
}
