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
// Here a failed COMMIT or ROLLBACK still releases what its transaction held (a pg client that died
// is then dropped by its pool), after `reset` ends a transaction the connection may still have open.
import { PrismaBetterSQLite3 } from '@prisma/adapter-better-sqlite3';
import { PrismaPg } from '@prisma/adapter-pg';

type Factory = PrismaBetterSQLite3 | PrismaPg;
type Adapter = Awaited<ReturnType<Factory['connect']>>;
type Transaction = Awaited<ReturnType<Adapter['startTransaction']>>;
type Query = Parameters<Transaction['executeRaw']>[0];

/** The adapter for a SQLite `file`, waiting up to `busyTimeoutMs` for a lock held by another process. */
export function sqliteAdapter(file: string, busyTimeoutMs: number): PrismaBetterSQLite3 {
  const inner = new PrismaBetterSQLite3({ url: file, timeout: busyTimeoutMs });
  return releasing(inner, (adapter) => {
    const connection = sqliteConnectionOf(adapter);
    // SQLite keeps a transaction open after a failed COMMIT unless it ended it itself (a full disk may).
    return () => {
      if (connection.inTransaction) connection.exec('ROLLBACK');
    };
  });
}

/** The adapter for PostgreSQL: a pool of `max` connections to `connectionString`, on `schema`. */
export function postgresAdapter(connectionString: string, schema: string, max: number): PrismaPg {
  // PostgreSQL ends the transaction of a failed COMMIT itself, and a dead connection has none.
  return releasing(new PrismaPg({ connectionString, options: `-c search_path=${schema}`, max }, { schema }), () => () => {});
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

/** `inner` with every connection's transactions releasing what they hold when their end fails. */
function releasing<F extends Factory>(inner: F, resetOf: (adapter: Adapter) => () => void): F {
  const wrap = async (connect: () => Promise<Adapter>) => {
    const adapter = await connect();
    return releasingTransactions(adapter, resetOf(adapter));
  };
  const replacements = {
    connect: () => wrap(() => inner.connect()),
    connectToShadowDb: () => wrap(() => inner.connectToShadowDb()),
  };
  return overriding(inner, replacements as Partial<Record<keyof F, unknown>>);
}

function releasingTransactions(adapter: Adapter, reset: () => void): Adapter {
  const startTransaction = async (level?: Parameters<Adapter['startTransaction']>[0]) => {
    const tx = await adapter.startTransaction(level);
    const executeRaw = async (query: Query): Promise<number> => {
      if (query.sql !== 'COMMIT' && query.sql !== 'ROLLBACK') return tx.executeRaw(query);
      try {
        return await tx.executeRaw(query);
      } catch (err) {
        try {
          reset();
        } catch {
          // The error thrown below is the one to report.
        }
        // Prisma calls neither commit() nor rollback() after this query fails: release here.
        await tx.rollback();
        throw err;
      }
    };
    return overriding(tx, { executeRaw });
  };
  return overriding(adapter, { startTransaction });
}

/** `target` with some members replaced; every other member its own, bound to it (it has private fields). */
function overriding<T extends object>(target: T, replacements: Partial<Record<keyof T, unknown>>): T {
  return new Proxy(target, {
    get(t, prop) {
      if (Object.hasOwn(replacements, prop)) return replacements[prop as keyof T];
      const value: unknown = Reflect.get(t, prop, t);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(t) : value;
    },
  });
}
