// The Prisma client factory: SQLite through better-sqlite3 by default, PostgreSQL through pg when
// DATABASE_URL says so. Both generated clients share the same models, so callers see one type.
import fs from 'node:fs';
import path from 'node:path';
import sqliteClient from '../../generated/prisma-sqlite/index.js';
import postgresClient from '../../generated/prisma-postgres/index.js';
import type { Prisma as PrismaNamespace, PrismaClient } from '../../generated/prisma-sqlite/index.js';
import { parseDatabaseUrl, type Provider } from './database-url.js';
import { postgresAdapter, sqliteAdapter } from './adapters.js';
import { PG_TIMEOUTS, type PgTimeouts } from './pg-pool.js';
import { keepSqliteTempFilesBeside } from './sqlite-temp-dir.js';

export type Prisma = PrismaClient;
/** The client inside `prisma.$transaction(async (tx) => ...)`. */
export type Tx = PrismaNamespace.TransactionClient;

export interface Database {
  prisma: Prisma;
  provider: Provider;
  /** Cheap round trip for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

// Prisma's default error message quotes the calling source around the failing call: in the
// bundled client that is ~33 KB of minified code per message, on every log line of a database
// outage. 'minimal' keeps the message itself ("Can't reach database server at ...").
const ERROR_FORMAT = 'minimal' as const;

/** SQLite waits this long for a lock held by the other process (API vs worker) before failing. */
const SQLITE_BUSY_TIMEOUT_MS = 10_000;

/** PostgreSQL connections one process holds at most. */
const PG_POOL_SIZE = 5;

/** `pgTimeouts`: how long PostgreSQL may keep a caller waiting (tests shorten them). */
export function openDatabase(url: string, pgTimeouts: PgTimeouts = PG_TIMEOUTS): Database {
  const target = parseDatabaseUrl(url);
  let prisma: Prisma;
  if (target.provider === 'sqlite') {
    if (target.file !== ':memory:') fs.mkdirSync(path.dirname(target.file), { recursive: true });
    keepSqliteTempFilesBeside(target.file);
    prisma = new sqliteClient.PrismaClient({ adapter: sqliteAdapter(target.file, SQLITE_BUSY_TIMEOUT_MS), errorFormat: ERROR_FORMAT });
  } else {
    const adapter = postgresAdapter(target.connectionString, target.schema, PG_POOL_SIZE, pgTimeouts);
    prisma = new postgresClient.PrismaClient({ adapter, errorFormat: ERROR_FORMAT }) as unknown as Prisma;
  }
  return {
    prisma,
    provider: target.provider,
    async ping() {
      await prisma.$queryRawUnsafe('SELECT 1');
    },
    async close() {
      await prisma.$disconnect();
    },
  };
}
