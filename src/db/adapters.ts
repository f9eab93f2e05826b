// Prisma's driver adapters (better-sqlite3, pg), with transactions that always give back their
// connection, however they end.
//
// Prisma 6.19 sends a transaction's COMMIT or ROLLBACK as a query, and only once that query has
// succeeded calls the adapter's commit() or rollback(), which releases what the transaction holds:
// the better-sqlite3 adapter's transaction lock, a pg pool's client. When the query fails, neither
// is called (prisma/orm#29933, open upstream), and what the transaction held is never given back:
//   - SQLite: a full disk fails the COMMIT (SQLite grows its WAL at the commit). Measured under
//     `qatserve serve` on a 400 MB tmpfs filled up: the first POST /v1/jobs answered 500, every
//     later one hung, and still hung once the disk was emptied, until the API was restarted;
//   - PostgreSQL: a connection that dies inside a transaction (a restart, a failover,
//     pg_terminate_backend) fails the ROLLBACK that follows, and its pool client is never
//     released. Measured: three transactions cut off that way, then two more, left the process's
//     pool of 5 empty, and every later query waited for ever.
// Here a failed COMMIT or ROLLBACK still releases what its transaction held: SQLite's lock, after
// ending a transaction the connection may still have open; a pg client, dropped from its pool (its
// connection may be dead, or still waiting for an answer that timed out).
import { PrismaBetterSQLite3 } from '@prisma/adapter-better-sqlite3';
import { PrismaPg } from '@prisma/adapter-pg';
import { DatabaseUnavailableError, isPgUnreachable } from './db-errors.js';
import { pgPoolConfig, type PgTimeouts } from './pg-pool.js';
import { overriding } from '../overriding.js';

type Factory = PrismaBetterSQLite3 | PrismaPg;
type Adapter = Awaited<ReturnType<Factory['connect']>>;
type Transaction = Awaited<ReturnType<Adapter['startTransaction']>>;
type Query = Parameters<Transaction['executeRaw']>[0];

/** The adapter for a SQLite `file`, waiting up to `busyTimeoutMs` for a lock held by another process. */
export function sqliteAdapter(file: string, busyTimeoutMs: number): PrismaBetterSQLite3 {
  const inner = new PrismaBetterSQLite3({ url: file, timeout: busyTimeoutMs });
  return releasing(inner, (adapter) => {
    const connection = sqliteConnectionOf(adapter);
    return async (tx) => {
      try {
        // SQLite keeps a transaction open after a failed COMMIT unless it ended it itself (a full disk may).
        if (connection.inTransaction) connection.exec('ROLLBACK');
      } catch {
        // The failed COMMIT's error is the one to report.
      }
      await tx.rollback();
    };
  });
}

/**
 * The adapter for PostgreSQL: a pool of `max` connections to `connectionString`, on `schema`.
 * Prisma names the schema in the queries it builds; a transaction's raw statements (the row locks
 * of src/jobs/job-lifecycle.ts) name no schema, so each transaction sets it with SET LOCAL, which
 * ends with the transaction and so also holds behind PgBouncer's transaction pooling. A raw
 * statement outside a transaction sees only `public`: run it in one, or name the schema.
 */
export function postgresAdapter(connectionString: string, schema: string, max: number, timeouts: PgTimeouts): PrismaPg {
  // PostgreSQL ends the transaction of a failed COMMIT itself, and a dead connection has none; the
  // client goes, as reusing one whose query timed out would queue the next query behind it.
  const inner = new PrismaPg(pgPoolConfig(connectionString, max, timeouts), { schema });
  const onSchema = (adapter: Adapter) => namingUnavailable(settingSearchPath(adapter, schema));
  return releasing(inner, () => async (tx) => pgTransactionClientOf(tx).release(true), onSchema);
}

/** `adapter` whose transactions start with `schema` first on their search path. */
function settingSearchPath(adapter: Adapter, schema: string): Adapter {
  const startTransaction = async (level?: Parameters<Adapter['startTransaction']>[0]) => {
    const tx = await adapter.startTransaction(level);
    try {
      await tx.executeRaw({ sql: `SET LOCAL search_path TO "${schema}"`, args: [], argTypes: [] });
    } catch (err) {
      pgTransactionClientOf(tx).release(true); // its transaction ends with its connection
      throw err;
    }
    return tx;
  };
  return overriding(adapter, { startTransaction });
}

/**
 * `err`, as a DatabaseUnavailableError when it is one of pg's unreachable-server errors, which
 * @prisma/adapter-pg passes on as they are (it names only ECONNREFUSED, ENOTFOUND, ECONNRESET and
 * ETIMEDOUT).
 */
function unavailable(err: unknown): unknown {
  return isPgUnreachable(err) ? new DatabaseUnavailableError(`the database did not answer: ${err.message}`) : err;
}

/** `q` with its queries' unreachable-server errors named DatabaseUnavailableError. */
function namingUnavailable<Q extends Adapter | Transaction>(q: Q): Q {
  const rethrow = (err: unknown): never => {
    throw unavailable(err);
  };
  const replacements: Partial<Record<keyof Adapter, unknown>> = {
    queryRaw: (query: Query) => q.queryRaw(query).catch(rethrow),
    executeRaw: (query: Query) => q.executeRaw(query).catch(rethrow),
  };
  if ('startTransaction' in q) {
    replacements.startTransaction = (level?: Parameters<Adapter['startTransaction']>[0]) =>
      q.startTransaction(level).then((tx) => namingUnavailable(tx), rethrow);
  }
  return overriding(q, replacements as Partial<Record<keyof Q, unknown>>);
}

/** What is used of better-sqlite3's connection. */
interface SqliteConnection {
  readonly inTransaction: boolean;
  exec(sql: string): unknown;
}

/** The adapter's better-sqlite3 connection (its `client`, a property the adapter does not declare). */
function sqliteConnectionOf(adapter: Adapter): SqliteConnection {
  const client = (adapter as unknown as { client?: Partial<SqliteConnection> }).client;
  if (typeof client?.inTransaction !== 'boolean' || typeof client.exec !== 'function') {
    throw new Error('@prisma/adapter-better-sqlite3 no longer holds its connection as `client`: src/db/adapters.ts needs a look');
  }
  return client as SqliteConnection;
}

/** What is used of a pg transaction's pool client: `release(true)` drops it from the pool. */
interface PgPoolClient {
  release(drop?: boolean): void;
}

/**
 * The pool client a @prisma/adapter-pg transaction holds (its `client`, undeclared), with the
 * transaction's error listener removed (`cleanup`, as its own commit() does).
 */
function pgTransactionClientOf(tx: Transaction): PgPoolClient {
  const t = tx as unknown as { client?: Partial<PgPoolClient>; cleanup?: () => void };
  if (typeof t.client?.release !== 'function') {
    throw new Error('@prisma/adapter-pg no longer holds its transaction client as `client`: src/db/adapters.ts needs a look');
  }
  t.cleanup?.();
  return t.client as PgPoolClient;
}

/** Gives back what `tx` holds, after its COMMIT or ROLLBACK failed. */
type Release = (tx: Transaction) => Promise<void>;

/** `inner` with every connection's transactions releasing what they hold when their end fails. */
function releasing<F extends Factory>(inner: F, releaseOf: (adapter: Adapter) => Release, translate: (adapter: Adapter) => Adapter = (a) => a): F {
  const wrap = async (connect: () => Promise<Adapter>) => {
    const adapter = translate(await connect());
    return releasingTransactions(adapter, releaseOf(adapter));
  };
  const replacements = {
    connect: () => wrap(() => inner.connect()),
    connectToShadowDb: () => wrap(() => inner.connectToShadowDb()),
  };
  return overriding(inner, replacements as Partial<Record<keyof F, unknown>>);
}

function releasingTransactions(adapter: Adapter, release: Release): Adapter {
  const startTransaction = async (level?: Parameters<Adapter['startTransaction']>[0]) => {
    const tx = await adapter.startTransaction(level);
    const executeRaw = async (query: Query): Promise<number> => {
      if (query.sql !== 'COMMIT' && query.sql !== 'ROLLBACK') return tx.executeRaw(query);
      try {
        return await tx.executeRaw(query);
      } catch (err) {
        // Prisma calls neither commit() nor rollback() after this query fails: release here.
        await release(tx);
        throw err;
      }
    };
    return overriding(tx, { executeRaw });
  };
  return overriding(adapter, { startTransaction });
}
