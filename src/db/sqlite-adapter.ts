// SQLite through Prisma's better-sqlite3 adapter, with transactions that end when their COMMIT fails.
//
// Prisma 6.19 sends a transaction's COMMIT as a query and only then calls the adapter's commit(),
// which releases the adapter's transaction lock. When that query fails it calls neither commit()
// nor rollback(): the lock is never released, the connection stays inside the transaction, and
// every later transaction of the process waits forever, even once the cause has gone
// (prisma/orm#29933, open). A full disk does it: SQLite grows its WAL at the commit, and the
// COMMIT fails with SQLITE_FULL. Measured under `qatserve serve` on a 400 MB tmpfs filled up: the
// first POST /v1/jobs answered 500, every later one hung, and still hung after the disk was
// emptied, until the API was restarted. Here a failed COMMIT rolls the connection back (unless
// SQLite already did) and releases the lock; the caller gets the COMMIT's error.
import { PrismaBetterSQLite3 } from '@prisma/adapter-better-sqlite3';

type Factory = PrismaBetterSQLite3;
type Adapter = Awaited<ReturnType<Factory['connect']>>;
type Transaction = Awaited<ReturnType<Adapter['startTransaction']>>;
type Query = Parameters<Transaction['executeRaw']>[0];

/** What is used of the adapter's better-sqlite3 connection. */
interface Connection {
  readonly inTransaction: boolean;
  exec(sql: string): unknown;
}

/** The adapter's better-sqlite3 connection (its `client`, a property the adapter does not declare). */
function connectionOf(adapter: Adapter): Connection {
  const client = (adapter as unknown as { client?: Partial<Connection> }).client;
  if (typeof client?.inTransaction !== 'boolean' || typeof client.exec !== 'function') {
    throw new Error('@prisma/adapter-better-sqlite3 no longer holds its connection as `client`: src/db/sqlite-adapter.ts needs a look');
  }
  return client as Connection;
}

/** The adapter for `file`, waiting up to `busyTimeoutMs` for a lock held by another process. */
export function sqliteAdapter(file: string, busyTimeoutMs: number): Factory {
  const inner = new PrismaBetterSQLite3({ url: file, timeout: busyTimeoutMs });
  return {
    provider: inner.provider,
    adapterName: inner.adapterName,
    connect: async () => endingFailedCommits(await inner.connect()),
    connectToShadowDb: async () => endingFailedCommits(await inner.connectToShadowDb()),
  } as Factory;
}

/** `target` with `name` replaced; every other member its own, bound to it (it has private fields). */
function overriding<T extends object>(target: T, name: keyof T, replacement: unknown): T {
  return new Proxy(target, {
    get(t, prop) {
      if (prop === name) return replacement;
      const value: unknown = Reflect.get(t, prop, t);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(t) : value;
    },
  });
}

function endingFailedCommits(adapter: Adapter): Adapter {
  const connection = connectionOf(adapter);
  const startTransaction: Adapter['startTransaction'] = async (level) => {
    const tx = await adapter.startTransaction(level);
    const executeRaw = async (query: Query): Promise<number> => {
      if (query.sql !== 'COMMIT' && query.sql !== 'ROLLBACK') return tx.executeRaw(query);
      try {
        return await tx.executeRaw(query);
      } catch (err) {
        // SQLite may end a transaction itself on an error (a full disk): then there is nothing to roll back.
        if (query.sql === 'ROLLBACK' && !connection.inTransaction) return 0;
        if (connection.inTransaction) {
          try {
            connection.exec('ROLLBACK');
          } catch {
            // The error thrown below is the one to report.
          }
        }
        // Prisma calls neither commit() nor rollback() after this query fails: release the lock here.
        await tx.rollback();
        throw err;
      }
    };
    return overriding(tx, 'executeRaw', executeRaw);
  };
  return overriding(adapter, 'startTransaction', startTransaction);
}
