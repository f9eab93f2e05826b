// The settings of every long-lived PostgreSQL pool (Prisma's, the artifact store's). pg waits for
// ever by default: for a free client, for a new connection, for an answer. When the database stops
// answering (a network partition, a failover whose old primary is gone) a query in flight then
// hangs until the kernel gives up on its TCP connection (~15 minutes at Linux's tcp_retries2 = 15),
// and every query after it queues behind the stuck clients. Measured before these limits, with the
// database's packets dropped and DATABASE_URL's host moved to a live server 10 s later: requests
// with a key hung (curl gave up after 60 s) and a running job's progress stood still for 938 s.
import type pg from 'pg';

export interface PgTimeouts {
  /** Longest wait for a connection: a free client of the pool, or a new one to the server. */
  connectMs: number;
  /** Longest wait for a query's answer; the client is then dropped, not reused. */
  queryMs: number;
}

/**
 * 5 s for a connection: a pool that has had no free client for that long is stuck or swamped, and an
 * API request answers 503 rather than wait. 30 s for a query: the longest statement measured, the
 * cascade delete of a 1000-epoch Fashion-MNIST job's 1.9M points, took 1.4 s (`npx tsx
 * bench/job-delete.ts`), and statements inside a transaction are held to Prisma's 5 s for the whole
 * transaction anyway; so only a server that stopped answering gets near it.
 */
export const PG_TIMEOUTS: PgTimeouts = { connectMs: 5_000, queryMs: 30_000 };

/**
 * A pool of at most `max` connections to `connectionString`. No search path is set at connection
 * (libpq's `options`): PgBouncer, the usual pooler in front of a shared PostgreSQL, refuses it
 * ("unsupported startup parameter: options"), and the URL's own `options` replaced it anyway. Prisma
 * names the schema in its queries; the artifact store names it too, and transactions set it
 * (postgresAdapter) for raw statements.
 */
export function pgPoolConfig(connectionString: string, max: number, timeouts: PgTimeouts): pg.PoolConfig {
  return {
    connectionString,
    max,
    connectionTimeoutMillis: timeouts.connectMs,
    query_timeout: timeouts.queryMs,
  };
}
