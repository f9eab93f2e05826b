// One place that reads DATABASE_URL: which provider, which file or server, which PostgreSQL schema.
import path from 'node:path';
import { parse as parsePgUrl } from 'pg-connection-string';
import { hostPort } from '../host-port.js';

export type Provider = 'sqlite' | 'postgres';

export type DatabaseTarget = { provider: 'sqlite'; file: string } | { provider: 'postgres'; connectionString: string; schema: string };

export class DatabaseUrlError extends Error {
  readonly code = 'DATABASE_URL_INVALID';
}

/** Whether DATABASE_URL names a PostgreSQL server (else it is SQLite, or invalid). */
export const isPostgresUrl = (url: string): boolean => /^postgres(ql)?:\/\//.test(url);

/**
 * `file:./data/qatserve.db` (relative to the working directory, as Prisma reads it) or
 * `postgres[ql]://user@host:port/db?schema=name` (Prisma's `schema` parameter; default `public`),
 * including libpq's Unix-socket forms (`postgresql://user@/db?host=/var/run/postgresql`, or the
 * socket directory percent-encoded as the host), which WHATWG's URL refuses.
 */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  if (isPostgresUrl(url)) {
    // The query is split off by hand: `new URL` threw a bare TypeError (a stack trace at start-up)
    // on the socket forms, which pg itself connects with.
    const [base, query = ''] = splitOnce(url, '?');
    const params = new URLSearchParams(query);
    const schema = params.get('schema') ?? 'public';
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
      throw new DatabaseUrlError(`schema "${schema}" must be a plain identifier`);
    }
    const hosts = severalHosts(base, params);
    if (hosts) {
      throw new DatabaseUrlError(
        `names several hosts (${hosts}), as libpq's failover URLs do, but the driver connects to one: ` +
          "give the one that follows the primary (a managed service's writer endpoint, HAProxy with Patroni's health check, or a virtual IP)",
      );
    }
    // pg would send unknown parameters to the server as startup options; `schema` is ours.
    params.delete('schema');
    const rest = params.toString();
    const connectionString = rest ? `${base}?${rest}` : base;
    readPgUrl(connectionString); // refuses what pg could not connect with, here rather than at the first query
    return { provider: 'postgres', connectionString, schema };
  }
  if (url.startsWith('file:')) {
    const file = url.slice('file:'.length).split('?')[0];
    if (!file) throw new DatabaseUrlError('file: URL without a path');
    return { provider: 'sqlite', file: file === ':memory:' ? file : path.resolve(file) };
  }
  throw new DatabaseUrlError(`must start with file: or postgres(ql)://, got "${url.split(':')[0]}:"`);
}

/**
 * The hosts of a libpq multi-host URL (`postgresql://u@a:5432,b:5432/db`, or `?host=a,b`), or
 * null for one. node-postgres reads neither: the first was "not a valid PostgreSQL URL (Invalid
 * URL)", the second a socket path with a comma in it ("cannot be reached (connect ENOENT ...)").
 */
function severalHosts(base: string, params: URLSearchParams): string | null {
  const authority = base.replace(/^postgres(ql)?:\/\//, '').split('/')[0];
  const hosts = authority.slice(authority.lastIndexOf('@') + 1);
  if (hosts.includes(',')) return hosts;
  const param = params.get('host');
  return param?.includes(',') ? param : null;
}

/** Where a database is, for messages: the SQLite file, or PostgreSQL's server and schema. */
export function databaseWhere(target: DatabaseTarget): string {
  return target.provider === 'sqlite' ? target.file : `schema ${target.schema} at ${postgresServer(target.connectionString)}`;
}

/** Where a PostgreSQL connection string points, for messages: `host:port`, or the socket directory of a Unix-socket URL. */
export function postgresServer(connectionString: string): string {
  const c = readPgUrl(connectionString);
  if (c.host?.startsWith('/')) return `${c.host} (Unix socket)`;
  // pg's defaults for what the URL leaves out.
  return hostPort(c.host || process.env.PGHOST || 'localhost', c.port || process.env.PGPORT || 5432);
}

/** The connection string as pg reads it (pg-connection-string, pg's own parser). */
function readPgUrl(connectionString: string): ReturnType<typeof parsePgUrl> {
  try {
    return parsePgUrl(connectionString);
  } catch (err) {
    throw new DatabaseUrlError(`not a valid PostgreSQL URL (${(err as Error).message})`);
  }
}

function splitOnce(s: string, sep: string): [string, string?] {
  const i = s.indexOf(sep);
  return i < 0 ? [s] : [s.slice(0, i), s.slice(i + 1)];
}
