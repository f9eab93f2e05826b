import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import BetterSqlite3 from 'better-sqlite3';
import { openDatabase } from '../../src/db/database.js';
import { DatabaseUnavailableError } from '../../src/db/db-errors.js';
import { migrate, planMigrations, readMigrations, MigrationError } from '../../src/db/migrate.js';
import { runCli } from '../api/api-process.js';
import { dropSchema, PG_BASE, pgUrl, tempSqliteUrl, uniqueSchema } from './test-databases.js';

const schema = uniqueSchema('migrate');
const socketSchema = uniqueSchema('migrate_socket');
const sqlite = tempSqliteUrl('migrate');

afterAll(async () => {
  await dropSchema(schema);
  await dropSchema(socketSchema);
  fs.rmSync(sqlite.dir, { recursive: true, force: true });
});

async function roundTrip(url: string) {
  const db = openDatabase(url);
  try {
    await db.ping();
    await db.prisma.trainingJob.create({
      data: { id: 'j1', name: 'n', status: 'queued', config: '{}' },
    });
    await db.prisma.metricPoint.create({ data: { jobId: 'j1', step: 1, epoch: 1, loss: 2.5 } });
    // The unique (jobId, step) key is what makes a resumed job's metric writes idempotent.
    await expect(db.prisma.metricPoint.create({ data: { jobId: 'j1', step: 1, epoch: 1, loss: 1 } })).rejects.toThrow();
    await db.prisma.metricPoint.upsert({
      where: { jobId_step: { jobId: 'j1', step: 1 } },
      create: { jobId: 'j1', step: 1, epoch: 1, loss: 9 },
      update: { loss: 1.25 },
    });
    const points = await db.prisma.metricPoint.findMany({ where: { jobId: 'j1' } });
    expect(points.map((p) => [p.step, p.loss])).toEqual([[1, 1.25]]);
  } finally {
    await db.close();
  }
}

describe('migrate', () => {
  it('applies the SQLite migrations once, records them, and the client works', async () => {
    const first = await migrate(sqlite.url);
    expect(first.applied).toEqual(readMigrations('sqlite').map((m) => m.name));
    const second = await migrate(sqlite.url);
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toEqual(first.applied);
    const raw = new BetterSqlite3(sqlite.url.slice(5));
    const rows = raw.prepare('SELECT migration_name, checksum, finished_at FROM _prisma_migrations').all() as {
      migration_name: string;
      checksum: string;
      finished_at: string | null;
    }[];
    raw.close();
    expect(rows).toHaveLength(first.applied.length);
    expect(rows[0].checksum).toBe(readMigrations('sqlite')[0].checksum);
    await roundTrip(sqlite.url);
  });

  it('applies the PostgreSQL migrations into their own schema, once', async () => {
    const first = await migrate(pgUrl(schema));
    expect(first.applied.length).toBeGreaterThan(0);
    expect((await migrate(pgUrl(schema))).applied).toEqual([]);
    const client = new pg.Client({ connectionString: PG_BASE });
    await client.connect();
    const { rows } = await client.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, [schema]);
    await client.end();
    expect(rows.map((r) => r.table_name)).toEqual([
      'ApiKey',
      'ArtifactBlob',
      'ArtifactChunk',
      'ArtifactObject',
      'Checkpoint',
      'Deployment',
      'JobEvent',
      'MetricPoint',
      'Model',
      'TrainingJob',
      '_prisma_migrations',
    ]);
    await roundTrip(pgUrl(schema));
  });

  it("connects over the server's Unix socket, in both of libpq's URL forms", async (ctx) => {
    // Where this server listens, asked over TCP; the socket is only there when the server runs here.
    const client = new pg.Client({ connectionString: PG_BASE });
    await client.connect();
    const dirs = (await client.query<{ unix_socket_directories: string }>('SHOW unix_socket_directories')).rows[0].unix_socket_directories;
    const port = (await client.query<{ port: string }>('SHOW port')).rows[0].port;
    await client.end();
    const dir = dirs.split(',')[0].trim();
    if (!dir || !fs.existsSync(path.join(dir, `.s.PGSQL.${port}`))) ctx.skip();
    const { username, pathname } = new URL(PG_BASE);
    // `new URL` refused both forms, and migrate failed with a bare "TypeError: Invalid URL".
    const query = `postgresql://${username}@${pathname}?host=${dir}&port=${port}&schema=${socketSchema}`;
    const encoded = `postgresql://${username}@${encodeURIComponent(dir)}:${port}${pathname}?schema=${socketSchema}`;
    expect((await migrate(query)).applied).toEqual(readMigrations('postgres').map((m) => m.name));
    expect((await migrate(encoded)).applied).toEqual([]);
    await roundTrip(encoded);
  });

  it('says which socket directory has no server', async () => {
    const err = await migrate('postgresql://postgres@/test?host=/nonexistent-socket-dir').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseUnavailableError);
    expect((err as Error).message).toMatch(/^PostgreSQL at \/nonexistent-socket-dir \(Unix socket\) cannot be reached \(connect ENOENT/);
  });

  it('says which database it migrated: a `keys create` run from another directory makes its own', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-migrated-where-'));
    const file = path.join(dir, 'qatserve.db');
    const made = await runCli(['keys', 'create', '--name', 'ops', '--scopes', 'admin'], { DATA_DIR: dir });
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toContain(`migrated sqlite ${file}: applied ${readMigrations('sqlite')[0].name}, `);
    const again = await runCli(['migrate'], { DATA_DIR: dir });
    expect(again.stdout).toMatch(new RegExp(`^sqlite ${file}: applied 0 \\(none\\), already applied \\d+; deployment [0-9a-f]{16}\n$`));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('says in one line that the server refused a database or role that does not exist, and waits for neither', async () => {
    const server = new URL(PG_BASE).host;
    const noDb = new URL(PG_BASE);
    noDb.pathname = '/no_such_database_49';
    const err = await migrate(noDb.toString()).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'DATABASE_REFUSED',
      message: `PostgreSQL at ${server} refused the connection (database "no_such_database_49" does not exist): check DATABASE_URL`,
    });
    // A service exits too: waiting does not make the role exist.
    const noRole = new URL(PG_BASE);
    noRole.username = 'no_such_role_49';
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-refused-'));
    const api = await runCli(['api'], { DATA_DIR: dir, DATABASE_URL: noRole.toString() }, 20_000);
    expect(api.code).toBe(1);
    expect(api.stderr.trim()).toBe(`PostgreSQL at ${server} refused the connection (role "no_such_role_49" does not exist): check DATABASE_URL`);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('says in one line when TLS fails: a server without it, a certificate not trusted; a service exits too', async () => {
    // Stand-ins for PostgreSQL's answer to pg's SSLRequest: 'N' (ssl off), or 'S' and a TLS
    // handshake with a self-signed certificate that nothing here trusts.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-pg-tls-'));
    const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1'], {
      stdio: 'ignore',
    });
    const standIn = (answer: 'N' | 'S') =>
      net.createServer((socket) => {
        socket.once('data', () => {
          socket.write(answer);
          if (answer === 'S') new tls.TLSSocket(socket, { isServer: true, key: fs.readFileSync(key), cert: fs.readFileSync(cert) }).on('error', () => {});
        });
        socket.on('error', () => {});
      });
    const servers = [standIn('N'), standIn('S')];
    const ports = await Promise.all(
      servers.map((srv) => new Promise<number>((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as net.AddressInfo).port)))),
    );
    try {
      const url = (port: number) => `postgresql://postgres@127.0.0.1:${port}/test?sslmode=verify-full`;
      expect(await migrate(url(ports[0])).catch((e: unknown) => e)).toMatchObject({
        code: 'DATABASE_REFUSED',
        message: `PostgreSQL at 127.0.0.1:${ports[0]} takes no TLS connections, which DATABASE_URL asks for (sslmode): drop sslmode from it, or turn ssl on in the server`,
      });
      expect(await migrate(url(ports[1])).catch((e: unknown) => e)).toMatchObject({
        code: 'DATABASE_REFUSED',
        message: `PostgreSQL at 127.0.0.1:${ports[1]} sent a TLS certificate this process does not accept (self-signed certificate): trust the CA that signed it with NODE_EXTRA_CA_CERTS=<file>, or connect by the name it was issued for`,
      });
      // Before: pg's error and its stack, from `migrate` and from every service.
      const api = await runCli(['api'], { DATA_DIR: dir, DATABASE_URL: url(ports[0]) }, 20_000);
      expect([api.code, api.stderr.trim().split('\n')]).toEqual([1, [expect.stringMatching(/^PostgreSQL at 127\.0\.0\.1:\d+ takes no TLS connections/)]]);
    } finally {
      for (const srv of servers) srv.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an older build on a database a newer one migrated says so in one line and does not start', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-newer-db-'));
    const file = path.join(dir, 'qatserve.db');
    await migrate(`file:${file}`);
    const raw = new BetterSqlite3(file);
    raw
      .prepare('INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count) VALUES (?, ?, ?, ?, ?, 1)')
      .run('newer', 'c'.repeat(64), Date.now(), '29990101000000_from_a_newer_build', Date.now());
    raw.close();
    const r = await runCli(['worker'], { DATA_DIR: dir }, 20_000);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      'the database has migration 29990101000000_from_a_newer_build, which is not in this build: a newer qatserve migrated it; run that version (or newer) here',
    );
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a database whose applied migration was edited', () => {
    const files = readMigrations('sqlite');
    expect(() => planMigrations(files, [{ migration_name: files[0].name, checksum: 'x' }])).toThrow(MigrationError);
    expect(() => planMigrations(files, [{ migration_name: 'zzz', checksum: 'x' }])).toThrow(/not in this build/);
    expect(planMigrations(files, [])).toEqual(files);
  });
});
