// One place that reads DATABASE_URL: which provider, which file or server, which PostgreSQL schema.
import path from 'node:path';

export type Provider = 'sqlite' | 'postgres';

export type DatabaseTarget = { provider: 'sqlite'; file: string } | { provider: 'postgres'; connectionString: string; schema: string };

export class DatabaseUrlError extends Error {
  readonly code = 'DATABASE_URL_INVALID';
}

/** Whether DATABASE_URL names a PostgreSQL server (else it is SQLite, or invalid). */
export const isPostgresUrl = (url: string): boolean => /^postgres(ql)?:\/\//.test(url);

/**
 * `file:./data/qatserve.db` (relative to the working directory, as Prisma reads it) or
 * `postgres[ql]://user@host:port/db?schema=name` (Prisma's `schema` parameter; default `public`).
 */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  if (isPostgresUrl(url)) {
    const u = new URL(url);
    const schema = u.searchParams.get('schema') ?? 'public';
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
      throw new DatabaseUrlError(`schema "${schema}" must be a plain identifier`);
    }
    // pg would send unknown parameters to the server as startup options; `schema` is ours.
    u.searchParams.delete('schema');
    return { provider: 'postgres', connectionString: u.toString(), schema };
  }
  if (url.startsWith('file:')) {
    const file = url.slice('file:'.length).split('?')[0];
    if (!file) throw new DatabaseUrlError('file: URL without a path');
    return { provider: 'sqlite', file: file === ':memory:' ? file : path.resolve(file) };
  }
  throw new DatabaseUrlError(`DATABASE_URL must start with file: or postgres(ql)://, got "${url.split(':')[0]}:"`);
}
