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
 * A pool of at most `max` connections to `connectionString`, with `schema` first on the search path.
 * The URL's own `options` (libpq's startup options: `-c statement_timeout=...`, a hosted service's
 * `endpoint=...`) are kept beside the search path: pg lets the URL's value replace the config's,
 * and the search path was dropped, so the artifact store's queries went to `public`.
 */
export function pgPoolConfig(connectionString: string, schema: string, max: number, timeouts: PgTimeouts): pg.PoolConfig {
  const { url, options } = withoutOptions(connectionString);
  return {
    connectionString: url,
    options: [options, `-c search_path="${schema}"`].filter(Boolean).join(' '),
    max,
    connectionTimeoutMillis: timeouts.connectMs,
    query_timeout: timeouts.queryMs,
  };
}

/** `connectionString` without its `options` parameter, and that parameter's value ('' when none). */
function withoutOptions(connectionString: string): { url: string; options: string } {
  const at = connectionString.indexOf('?');
  if (at < 0) return { url: connectionString, options: '' };
  const params = new URLSearchParams(connectionString.slice(at + 1));
  const options = params.get('options') ?? '';
  params.delete('options');
  const rest = params.toString();
  return { url: connectionString.slice(0, at) + (rest ? `?${rest}` : ''), options };
}
