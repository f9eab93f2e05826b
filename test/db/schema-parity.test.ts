// SQLite's schema is the source; PostgreSQL's must hold the same models, and each provider's
// committed migrations must produce exactly what its schema describes.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readMigrations } from '../../src/db/migrate.js';
import { PG_BASE } from './test-databases.js';

const MARK = '// --- models (keep identical in both schemas) ---';
const models = (p: string) => fs.readFileSync(p, 'utf8').split(MARK)[1];

function diffFromEmpty(provider: 'sqlite' | 'postgres'): string {
  return execFileSync(
    'npx',
    ['prisma', 'migrate', 'diff', '--from-empty', '--to-schema-datamodel', `prisma/${provider}/schema.prisma`, '--script'],
    {
      encoding: 'utf8',
      env: { ...process.env, DATABASE_URL: provider === 'postgres' ? PG_BASE : 'file:./data/qatserve.db' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

describe('prisma schemas', () => {
  it('PostgreSQL holds the same models as the SQLite source', () => {
    const src = models('prisma/sqlite/schema.prisma');
    expect(src.length).toBeGreaterThan(500);
    expect(models('prisma/postgres/schema.prisma')).toBe(src);
  });

  it.each(['sqlite', 'postgres'] as const)('%s migrations add up to the schema', (provider) => {
    fs.mkdirSync('data', { recursive: true });
    // One migration so far, so the whole history equals a diff from empty. With more, this
    // becomes a shadow-database comparison.
    const all = readMigrations(provider);
    expect(all).toHaveLength(1);
    expect(all[0].sql.trim()).toBe(diffFromEmpty(provider).trim());
  });
});
