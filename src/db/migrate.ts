// Applies the committed migration SQL (prisma/<provider>/migrations/*/migration.sql) in name
// order, each inside a transaction, and records it in Prisma's own `_prisma_migrations` table so
// Prisma's tooling still recognises the database. `prisma migrate deploy` cannot do this offline
// for PostgreSQL (see DESIGN.md "Persistence"), so the service does it with the plain drivers.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { parseDatabaseUrl, postgresServer, type Provider } from './database-url.js';
import { DatabaseRefusedError, DatabaseUnavailableError, isPgNotAccepting, isPgRefused, isPgUnreachable, pgTlsRefusal } from './db-errors.js';
import { PG_TIMEOUTS } from './pg-pool.js';
import { keepSqliteTempFilesBeside } from './sqlite-temp-dir.js';

export class MigrationError extends Error {
  constructor(
    readonly code: 'MIGRATION_CHECKSUM_MISMATCH' | 'MIGRATION_FAILED' | 'MIGRATION_UNKNOWN',
    message: string,
  ) {
    super(message);
  }
}

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrateResult {
  provider: Provider;
  applied: string[];
  alreadyApplied: string[];
  /** This database's deployment id (src/db/deployment.ts), created by its first migration run. */
  deploymentId: string;
}

/** 16 hex digits: short enough for Redis key prefixes, random enough never to repeat. */
export const newDeploymentId = () => randomBytes(8).toString('hex');

/** src/db and dist/db are both two levels below the package root. */
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export function migrationsDir(provider: Provider): string {
  return path.join(packageRoot, 'prisma', provider, 'migrations');
}

export function readMigrations(provider: Provider): Migration[] {
  const dir = migrationsDir(provider);
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(dir, d.name, 'migration.sql')))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = fs.readFileSync(path.join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

// The table exactly as Prisma creates it, per provider.
const SQLITE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
)`;
const POSTGRES_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

interface Applied {
  migration_name: string;
  checksum: string;
}

/** Decide what to run; refuse when history and files disagree. Pure, so it is tested directly. */
export function planMigrations(files: Migration[], applied: Applied[]): Migration[] {
  const byName = new Map(files.map((m) => [m.name, m]));
  for (const a of applied) {
    const file = byName.get(a.migration_name);
    if (!file) {
      // An older build started on a database a newer one migrated (a machine left behind in an upgrade).
      throw new MigrationError(
        'MIGRATION_UNKNOWN',
        `the database has migration ${a.migration_name}, which is not in this build: a newer qatserve migrated it; run that version (or newer) here`,
      );
    }
    if (file.checksum !== a.checksum) {
      throw new MigrationError('MIGRATION_CHECKSUM_MISMATCH', `migration ${a.migration_name} was edited after it was applied`);
    }
  }
  const done = new Set(applied.map((a) => a.migration_name));
  return files.filter((m) => !done.has(m.name));
}

/** `connectMs`: how long PostgreSQL may take to accept the connection (tests shorten it). */
export async function migrate(databaseUrl: string, connectMs = PG_TIMEOUTS.connectMs): Promise<MigrateResult> {
  const target = parseDatabaseUrl(databaseUrl);
  const files = readMigrations(target.provider);
  if (target.provider === 'sqlite') return migrateSqlite(target.file, files);
  return migratePostgres(target.connectionString, target.schema, files, connectMs);
}

/**
 * The SQLite file cannot be made or written where the settings put it: a matter of DATA_DIR or
 * DATABASE_URL and of the disk's permissions (a Docker volume owned by another user, a read-only
 * mount), said as such rather than as better-sqlite3's "unable to open database file" and a stack.
 */
export class DatabaseFileError extends Error {
  readonly code = 'DATABASE_FILE_UNUSABLE';
}

const UNUSABLE_FILE_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST', 'SQLITE_CANTOPEN', 'SQLITE_PERM']);

function unusableFile(file: string, err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !(UNUSABLE_FILE_CODES.has(code) || code.startsWith('SQLITE_READONLY'))) return err;
  const user = process.getuid ? ` (uid ${process.getuid()})` : '';
  return new DatabaseFileError(
    `the SQLite database ${file} cannot be created or written (${(err as Error).message}): the file and its directory must be writable by this user${user}; set DATA_DIR (or DATABASE_URL=file:<path>) to a directory that is`,
  );
}

function migrateSqlite(file: string, files: Migration[]): MigrateResult {
  try {
    return migrateSqliteFile(file, files);
  } catch (err) {
    throw unusableFile(file, err);
  }
}

function migrateSqliteFile(file: string, files: Migration[]): MigrateResult {
  if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
  keepSqliteTempFilesBeside(file);
  const db = new BetterSqlite3(file, { timeout: 10_000 });
  try {
    // WAL lets the API read while a worker writes; the setting persists in the file.
    if (file !== ':memory:') db.pragma('journal_mode = WAL');
    db.exec(SQLITE_MIGRATIONS_TABLE);
    const result: MigrateResult = { provider: 'sqlite', applied: [], alreadyApplied: [], deploymentId: '' };
    // IMMEDIATE takes the write lock up front, so two processes migrating at once serialise.
    const run = db.transaction(() => {
      const applied = db
        .prepare('SELECT migration_name, checksum FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL')
        .all() as Applied[];
      result.alreadyApplied = applied.map((a) => a.migration_name);
      for (const m of planMigrations(files, applied)) {
        const started = new Date().toISOString();
        try {
          db.exec(m.sql);
        } catch (err) {
          throw new MigrationError('MIGRATION_FAILED', `${m.name}: ${(err as Error).message}`);
        }
        db.prepare(
          'INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count) VALUES (?, ?, ?, ?, ?, 1)',
        ).run(randomUUID(), m.checksum, new Date().toISOString(), m.name, started);
        result.applied.push(m.name);
      }
      db.prepare('INSERT INTO "Deployment" (id) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM "Deployment")').run(newDeploymentId());
      result.deploymentId = (db.prepare('SELECT id FROM "Deployment" ORDER BY "createdAt" LIMIT 1').get() as { id: string }).id;
    });
    run.immediate();
    return result;
  } finally {
    db.close();
  }
}

async function migratePostgres(connectionString: string, schema: string, files: Migration[], connectMs: number): Promise<MigrateResult> {
  // Every process migrates as it starts: without a limit, one started while the server's packets
  // were dropped waited for the kernel to give up on the connection (over 2 minutes), silent.
  // Migrations themselves get no query limit: one may rewrite a large table.
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: connectMs });
  await client.connect().catch((err: unknown) => {
    const server = postgresServer(connectionString);
    if (isPgUnreachable(err))
      throw new DatabaseUnavailableError(`PostgreSQL at ${server} cannot be reached (${err.message}): check DATABASE_URL and that the server runs`);
    // A server still starting up answers with an error, not a refusal: the same wait cures it.
    if (isPgNotAccepting(err)) throw new DatabaseUnavailableError(`PostgreSQL at ${server} takes no connections now (${err.message})`);
    if (isPgRefused(err)) throw new DatabaseRefusedError(`PostgreSQL at ${server} refused the connection (${err.message}): check DATABASE_URL`);
    const tls = pgTlsRefusal(err);
    if (tls) throw new DatabaseRefusedError(`PostgreSQL at ${server} ${tls}`);
    throw err;
  });
  try {
    await client.query('BEGIN');
    // One migrator at a time per schema, released at COMMIT/ROLLBACK.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`qatserve-migrate:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query(`SET LOCAL search_path TO "${schema}"`);
    await client.query(POSTGRES_MIGRATIONS_TABLE);
    const { rows } = await client.query<Applied>(
      'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL',
    );
    const result: MigrateResult = { provider: 'postgres', applied: [], alreadyApplied: rows.map((r) => r.migration_name), deploymentId: '' };
    for (const m of planMigrations(files, rows)) {
      const started = new Date();
      try {
        // Prisma's diff script creates "public" for the default schema; under another schema the
        // tables must land in search_path's first entry, so that line is skipped.
        await client.query(m.sql.replace(/^CREATE SCHEMA IF NOT EXISTS "public";$/m, ''));
      } catch (err) {
        throw new MigrationError('MIGRATION_FAILED', `${m.name}: ${(err as Error).message}`);
      }
      await client.query(
        'INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, started_at, applied_steps_count) VALUES ($1, $2, now(), $3, $4, 1)',
        [randomUUID(), m.checksum, m.name, started],
      );
      result.applied.push(m.name);
    }
    await client.query('INSERT INTO "Deployment" (id) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM "Deployment")', [newDeploymentId()]);
    result.deploymentId = (await client.query<{ id: string }>('SELECT id FROM "Deployment" ORDER BY "createdAt" LIMIT 1')).rows[0].id;
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}
