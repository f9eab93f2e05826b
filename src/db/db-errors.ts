// What a database failure means to a caller, whichever database and driver raised it. Callers ask
// these predicates rather than read drivers' error shapes, which differ between SQLite, pg and
// Prisma's wrappers of both.
import { certRefusedLine, isCertRefused, isSocketUnreachable } from '../socket-errors.js';

const DATABASE_UNAVAILABLE = 'DATABASE_UNAVAILABLE';

/**
 * The database did not answer: it cannot be reached, a connection was lost, or no connection came
 * free in time. Retrying later may succeed; nothing here is a fault of the request.
 */
export class DatabaseUnavailableError extends Error {
  // Prisma passes an adapter's error on as it is within a transaction, but otherwise wraps one that
  // has a code in its PrismaClientKnownRequestError with that code: callers see either.
  readonly code = DATABASE_UNAVAILABLE;
}

/**
 * Prisma's names for a connection that could not be made or was lost (its driver-adapter errors,
 * and the codes it gives them: P1001, P1017, P1008, P2037).
 */
const UNAVAILABLE_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);

/** PostgreSQL's SQLSTATE classes for a lost connection (08) and a server shutting down (57P01-57P03). */
const UNAVAILABLE_SQLSTATE = /^(08|57P0[123])/;

interface DriverAdapterCause {
  kind?: unknown;
  code?: unknown;
  /** The driver's own code (better-sqlite3's `SQLITE_BUSY`, ...). */
  originalCode?: unknown;
}

/**
 * What the driver adapter made of the driver's error: a DriverAdapterError's cause, which Prisma
 * passes on as it is within a transaction and otherwise keeps in its own error's `meta`.
 */
function driverAdapterCause(err: unknown): DriverAdapterCause | undefined {
  const e = err as { name?: unknown; cause?: DriverAdapterCause; meta?: { driverAdapterError?: { cause?: DriverAdapterCause } } } | null;
  if (e?.name === 'DriverAdapterError') return e.cause;
  return e?.meta?.driverAdapterError?.cause;
}

/** Whether `err` is a PostgreSQL error, as the adapter passed it on, whose SQLSTATE `states` matches. */
function hasAdapterPgState(err: unknown, states: RegExp): boolean {
  const cause = driverAdapterCause(err);
  return cause?.kind === 'postgres' && typeof cause.code === 'string' && states.test(cause.code);
}

/**
 * pg's own errors for a server it could not reach or that stopped answering (they carry no code;
 * @prisma/adapter-pg passes them on as they are), and the socket errors of a network that cannot
 * reach it.
 */
const PG_UNREACHABLE_MESSAGES = new Set([
  'timeout exceeded when trying to connect',
  'Connection terminated due to connection timeout',
  // A lone client's connectionTimeoutMillis (a pool's says the line above).
  'timeout expired',
  'Query read timeout',
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
]);

/** Whether `err`, as the pg driver raised it, says the server could not be reached or stopped answering. */
export function isPgUnreachable(err: unknown): err is Error {
  if (!(err instanceof Error)) return false;
  return PG_UNREACHABLE_MESSAGES.has(err.message) || isSocketUnreachable(err);
}

/**
 * PostgreSQL's SQLSTATEs for a server that answers but takes no connection now: starting up,
 * shutting down (57P01-57P03), or at max_connections (53300). Each passes with time.
 */
const NOT_ACCEPTING_SQLSTATE = /^(57P0[123]|53300)$/;

/** Whether `err` is an error the pg driver raised with a SQLSTATE that `states` matches. */
function hasPgState(err: unknown, states: RegExp): err is Error {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && states.test(code);
}

/** Whether `err`, as the pg driver raised it, is a server's refusal of a connection that waiting cures. */
export const isPgNotAccepting = (err: unknown): err is Error => hasPgState(err, NOT_ACCEPTING_SQLSTATE);

/**
 * PostgreSQL turned the connection away for a reason waiting does not cure: no such database or
 * role, a wrong password (SQLSTATE 3D000, class 28). DATABASE_URL needs fixing.
 */
export class DatabaseRefusedError extends Error {
  readonly code = 'DATABASE_REFUSED';
}

const REFUSED_SQLSTATE = /^(28|3D000$)/;

/**
 * What went wrong with TLS to PostgreSQL, in words for "PostgreSQL at host:port ...", or null when
 * `err` is no TLS trouble. DATABASE_URL asking for TLS (`sslmode`) of a server without it, or a
 * certificate this process does not trust: waiting cures neither, and each was a stack at start.
 */
export function pgTlsRefusal(err: unknown): string | null {
  if (!(err instanceof Error)) return null;
  if (err.message === 'The server does not support SSL connections') {
    return 'takes no TLS connections, which DATABASE_URL asks for (sslmode): drop sslmode from it, or turn ssl on in the server';
  }
  return isCertRefused(err) ? certRefusedLine(err) : null;
}

/** Whether `err`, as the pg driver raised it, is the server refusing this connection's database, role or password. */
export const isPgRefused = (err: unknown): err is Error => hasPgState(err, REFUSED_SQLSTATE);

/** Whether `err` says the database could not be reached or answered too late (see DatabaseUnavailableError). */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (err instanceof DatabaseUnavailableError || (err as { code?: unknown } | null)?.code === DATABASE_UNAVAILABLE) return true;
  const cause = driverAdapterCause(err);
  if (!cause) return false;
  if (typeof cause.kind === 'string' && UNAVAILABLE_KINDS.has(cause.kind)) return true;
  return hasAdapterPgState(err, UNAVAILABLE_SQLSTATE);
}

/**
 * SQLite's code for `err`: the driver's own (`SQLITE_BUSY`, `SQLITE_IOERR_WRITE`, ...), raw (as
 * Prisma passes it on within a transaction, or as its own error's code) or as the adapter's cause.
 */
function sqliteCode(err: unknown): string | undefined {
  for (const code of [(err as { code?: unknown } | null)?.code, driverAdapterCause(err)?.originalCode]) {
    if (typeof code === 'string' && code.startsWith('SQLITE_')) return code;
  }
  return undefined;
}

/**
 * Whether `err` is SQLite's SQLITE_BUSY: another process (the other of `qatserve serve`'s two, a
 * `qatserve keys` command, a backup or an `sqlite3` shell with a transaction open) held the file's
 * lock past the busy timeout. The adapter names exactly that code a SocketTimeout, so it is also
 * isDatabaseUnavailable; this tells the operator where to look instead of "cannot be reached".
 */
export function isDatabaseLocked(err: unknown): boolean {
  return sqliteCode(err) === 'SQLITE_BUSY';
}

/**
 * Whether `err` is a write refused for want of disk: SQLite's SQLITE_FULL ("database or disk is
 * full"), PostgreSQL's disk_full (53100). Nothing was stored.
 */
export function isStorageFull(err: unknown): boolean {
  if (sqliteCode(err) === 'SQLITE_FULL') return true;
  return hasAdapterPgState(err, /^53100$/);
}

/**
 * Whether `err` is SQLite failing at its file's disk: an I/O error (SQLITE_IOERR_*), or a file it
 * may no longer write (SQLITE_READONLY_*). Its disk turned read-only under the open database (ext4
 * mounted errors=remount-ro, Debian's and most clouds' default, does so after one disk error: writes
 * then fail SQLITE_IOERR_WRITE), or the disk fails. Nothing was stored; reads mostly still answer.
 */
export function isSqliteDiskFailure(err: unknown): boolean {
  return /^SQLITE_(IOERR|READONLY)/.test(sqliteCode(err) ?? '');
}

/** `err`'s SQLite code and message ("SQLITE_IOERR_WRITE: disk I/O error"), for the log. */
export function sqliteFailureLine(err: unknown): string {
  // Prisma's own error puts SQLite's message last, under its "Invalid `prisma.x()` invocation:".
  return `${sqliteCode(err) ?? 'SQLITE_?'}: ${String((err as Error).message)
    .trim()
    .split('\n')
    .at(-1)}`;
}

/**
 * Whether `err` is PostgreSQL refusing a write because the session is read-only (SQLSTATE 25006):
 * DATABASE_URL reaches a standby (a failover that demoted its server, a replica or "reader"
 * endpoint), or default_transaction_read_only is set for maintenance. Nothing was written; reads
 * still work. As pg raised it (the artifact store's queries) or as Prisma passes it on.
 */
export function isDatabaseReadOnly(err: unknown): boolean {
  return hasPgState(err, /^25006$/) || hasAdapterPgState(err, /^25006$/);
}

/** Whether `err` is Prisma's P2021, a table that is not in the database: one qatserve never migrated. */
export function isTableMissing(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'P2021';
}
