// Prisma CLI configuration. The wasm ("js") schema engine with a driver adapter runs offline;
// the classic engine would download a binary. `--schema prisma/postgres/schema.prisma` selects
// the PostgreSQL schema; the adapter follows DATABASE_URL (SQLite file by default).
import { defineConfig } from 'prisma/config';
import { PrismaBetterSQLite3 } from '@prisma/adapter-better-sqlite3';
import { PrismaPg } from '@prisma/adapter-pg';

const url = process.env.DATABASE_URL ?? 'file:./data/qatserve.db';

export default defineConfig({
  engine: 'js',
  experimental: { adapter: true },
  schema: url.startsWith('postgres') ? 'prisma/postgres/schema.prisma' : 'prisma/sqlite/schema.prisma',
  async adapter() {
    if (url.startsWith('postgres')) return new PrismaPg({ connectionString: url });
    return new PrismaBetterSQLite3({ url: url.replace(/^file:/, '') });
  },
});
