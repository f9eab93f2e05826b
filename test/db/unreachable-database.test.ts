// PostgreSQL that stops answering: a network partition, then a failover to a live server. pg waits
// for ever by default, so before the pools had timeouts a query in flight at the cut hung until the
// kernel gave up on its connection (about 15 minutes), every later query queued behind it, API
// requests with a key hung, and a running job's progress stopped. Now each waits at most
// DATABASE_CONNECT_TIMEOUT_MS / DATABASE_QUERY_TIMEOUT_MS, fails as DATABASE_UNAVAILABLE (503 with
// Retry-After at the API), and the pools work again once a server answers.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresArtifactStore } from '../../src/artifacts/postgres-store.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { isDatabaseUnavailable } from '../../src/db/db-errors.js';
import { migrate } from '../../src/db/migrate.js';
import type { PgTimeouts } from '../../src/db/pg-pool.js';
import { apiEnv, bearer, call, createKey, leaks, runCli, startApi, type ApiProcess } from '../api/api-process.js';
import { tinySynthetic } from '../api/api-harness.js';
import { PartitionProxy } from '../integration/partition-proxy.js';
import { dropSchema, PG_BASE, pgUrl, uniqueSchema } from './test-databases.js';

const PG_PORT = Number(new URL(PG_BASE).port || 5432);
const TIMEOUTS: PgTimeouts = { connectMs: 500, queryMs: 1000 };
/**
 * The longest a caller may wait during the cut, with 2 s to spare for a busy machine: a
 * connection's timeout, or a query's and then its transaction's ROLLBACK's.
 */
const WAIT_LIMIT_MS = Math.max(TIMEOUTS.connectMs, 2 * TIMEOUTS.queryMs) + 2000;

/** How `work` ended, and after how long. */
async function timed(work: Promise<unknown>): Promise<{ ms: number; err: unknown }> {
  const start = Date.now();
  try {
    await work;
    return { ms: Date.now() - start, err: null };
  } catch (err) {
    return { ms: Date.now() - start, err };
  }
}

describe('PostgreSQL cut off, then failed over', () => {
  const schema = uniqueSchema('unreachable');
  let proxy: PartitionProxy;
  let db: Database;
  beforeAll(async () => {
    await migrate(pgUrl(schema));
    proxy = await PartitionProxy.start(PG_PORT);
  });
  afterAll(async () => {
    await db?.close();
    await proxy?.close();
    await dropSchema(schema);
  });

  it('queries and transactions fail as DATABASE_UNAVAILABLE within the timeouts, and all run again after the failover', async () => {
    db = openDatabase(proxy.through(pgUrl(schema)), TIMEOUTS);
    const prisma = db.prisma;
    // A pool of open connections when the cut comes: the queries after it are sent on them.
    await Promise.all(Array.from({ length: 5 }, () => prisma.$queryRawUnsafe('SELECT 1 FROM pg_sleep(0.05)')));
    // A transaction under way at the cut: its ROLLBACK fails too, and its client must not go back to the pool.
    let begun!: () => void;
    let proceed!: () => void;
    const underWay = new Promise<void>((resolve) => (begun = resolve));
    const cutDone = new Promise<void>((resolve) => (proceed = resolve));
    const open = timed(
      prisma.$transaction(async (tx) => {
        await tx.trainingJob.count();
        begun();
        await cutDone;
        return tx.trainingJob.count();
      }),
    );
    await underWay;

    proxy.cut();
    proceed();
    const during = await Promise.all([
      open,
      ...Array.from({ length: 8 }, () => timed(prisma.trainingJob.findMany({ take: 1 }))),
      timed(prisma.$transaction(async (tx) => tx.trainingJob.count())),
      timed(prisma.apiKey.create({ data: { id: 'k-cut', name: 'cut', prefix: 'p', keyHash: 'h', scopes: 'train' } })),
      timed(db.ping()),
    ]);
    for (const r of during) {
      expect(r.err, 'answered during the cut').not.toBeNull();
      expect(isDatabaseUnavailable(r.err), String(r.err)).toBe(true);
      expect(r.ms).toBeLessThan(WAIT_LIMIT_MS);
    }

    proxy.failover();
    // Before: the clients stuck in the cut connections were reused, and these waited for ever.
    for (let i = 0; i < 8; i++) {
      const r = await timed(prisma.trainingJob.count());
      expect(r.err).toBeNull();
    }
    const written = await prisma.$transaction(async (tx) =>
      tx.apiKey.create({ data: { id: 'k-after', name: 'after', prefix: 'p', keyHash: 'h', scopes: 'train' } }),
    );
    expect(written.name).toBe('after');
    expect(await prisma.apiKey.count()).toBe(1);
  });

  it('the artifact store fails a write within the timeouts, and writes and reads again after the failover', async () => {
    const store = new PostgresArtifactStore(proxy.through(pgUrl(schema)), schema, 64 * 1024, TIMEOUTS);
    try {
      const first = store.begin('models/a');
      await first.put('model.onnx', new Uint8Array(200_000).fill(7));
      proxy.cut();
      const r = await timed(first.commit());
      expect(r.err).not.toBeNull();
      expect(r.ms).toBeLessThan(WAIT_LIMIT_MS);

      proxy.failover();
      const again = store.begin('models/a');
      await again.put('model.onnx', new Uint8Array(200_000).fill(9));
      await again.commit();
      const bytes = Buffer.concat(await (await store.get('models/a/model.onnx')).toArray());
      expect(bytes.length).toBe(200_000);
      expect(bytes[199_999]).toBe(9);
    } finally {
      await store.close();
    }
  });
});

describe('starting against a PostgreSQL that does not answer', () => {
  it('migrate, which every process runs first, gives up within the connect timeout and says where', async () => {
    // Before: it waited for the kernel to give up on the connection (over 2 minutes), then printed a stack.
    const proxy = await PartitionProxy.start(PG_PORT);
    try {
      proxy.cut();
      const url = proxy.through(pgUrl(uniqueSchema('unreachable_migrate')));
      const r = await timed(migrate(url, TIMEOUTS.connectMs));
      expect(r.ms).toBeLessThan(TIMEOUTS.connectMs + 2000);
      expect(isDatabaseUnavailable(r.err)).toBe(true);
      expect((r.err as Error).message).toContain(`PostgreSQL at 127.0.0.1:${proxy.port} cannot be reached`);
    } finally {
      await proxy.close();
    }
  });

  it('qatserve migrate prints one line naming the server, not a stack', async () => {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    const r = await runCli(['migrate'], apiEnv('unreachable-cli', { DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/test' }));
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('PostgreSQL at 127.0.0.1:1 cannot be reached (connect ECONNREFUSED 127.0.0.1:1): check DATABASE_URL and that the server runs');
  });
});

describe('qatserve api with its PostgreSQL cut off', () => {
  const schema = uniqueSchema('unreachable_api');
  let proxy: PartitionProxy;
  let api: ApiProcess;
  let key: string;
  beforeAll(async () => {
    await migrate(pgUrl(schema));
    proxy = await PartitionProxy.start(PG_PORT);
    const direct = apiEnv('unreachable', { DATABASE_URL: pgUrl(schema), ARTIFACT_STORE: 'postgres' });
    key = await createKey(direct, 'ops', 'admin');
    api = await startApi({
      ...direct,
      DATABASE_URL: proxy.through(pgUrl(schema)),
      DATABASE_CONNECT_TIMEOUT_MS: String(TIMEOUTS.connectMs),
      DATABASE_QUERY_TIMEOUT_MS: String(TIMEOUTS.queryMs),
    });
  }, 60_000);
  afterAll(async () => {
    await api?.stop();
    await proxy?.close();
    await dropSchema(schema);
  });

  it('answers 503 DATABASE_UNAVAILABLE with Retry-After in seconds, stores nothing, and serves again after the failover', async () => {
    expect((await call(api.base, 'GET', '/v1/jobs', bearer(key))).status).toBe(200);

    proxy.cut();
    const start = Date.now();
    const [list, post, ready] = await Promise.all([
      call(api.base, 'GET', '/v1/jobs', bearer(key)),
      call(api.base, 'POST', '/v1/jobs', bearer(key), tinySynthetic),
      call(api.base, 'GET', '/readyz'),
    ]);
    // Before: the keyed requests never answered.
    expect(Date.now() - start).toBeLessThan(WAIT_LIMIT_MS);
    for (const r of [list, post]) {
      expect(r.status).toBe(503);
      expect(r.json.error.code).toBe('DATABASE_UNAVAILABLE');
      expect(r.headers.get('retry-after')).toBe('5');
      expect(leaks(r.text)).toEqual([]);
    }
    expect(ready.status).toBe(503);
    expect(ready.json.checks.database).toBe('failing');

    proxy.failover();
    await expect.poll(async () => (await call(api.base, 'GET', '/readyz')).status, { timeout: 10_000 }).toBe(200);
    const created = await call(api.base, 'POST', '/v1/jobs', bearer(key), tinySynthetic);
    expect(created.status).toBe(201);
    const after = await call(api.base, 'GET', '/v1/jobs', bearer(key));
    expect(after.status).toBe(200);
    expect(after.json.jobs.map((j: { id: string }) => j.id)).toEqual([created.json.id]);
  }, 60_000);

  it('answers 503 DATABASE_UNAVAILABLE when the server refuses connections', async () => {
    await proxy.close();
    const r = await call(api.base, 'GET', '/v1/jobs', bearer(key));
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('DATABASE_UNAVAILABLE');
  });
});

describe('PostgreSQL over a Unix socket, its server stopped and started', () => {
  it('fails as DATABASE_UNAVAILABLE while the socket file is gone, and answers again once it is back', async () => {
    // A stopped server removes its socket file: connecting gives ENOENT, which was not taken for
    // "unreachable". A socket of our own forwarding to the server stands in for it, so the test
    // stops nothing shared.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-pgsock-'));
    const socket = path.join(dir, `.s.PGSQL.5432`);
    const links = new Set<net.Socket>();
    const listen = () =>
      new Promise<net.Server>((resolve) => {
        const server = net.createServer((client) => {
          const upstream = net.connect(PG_PORT, '127.0.0.1');
          for (const s of [client, upstream]) {
            links.add(s);
            s.once('close', () => links.delete(s));
            s.on('error', () => {});
          }
          client.pipe(upstream).pipe(client);
        });
        server.listen(socket, () => resolve(server));
      });
    const schema = uniqueSchema('pg_socket');
    const { username, pathname } = new URL(PG_BASE);
    const url = `postgresql://${username}@${pathname}?host=${dir}&schema=${schema}`;
    let server = await listen();
    await migrate(url);
    const db = openDatabase(url, TIMEOUTS);
    try {
      expect(await db.prisma.trainingJob.count()).toBe(0);
      // Stopped: the socket file goes, open connections are cut.
      const closed = new Promise((r) => server.close(r));
      for (const s of links) s.destroy();
      await closed;
      expect(fs.existsSync(socket)).toBe(false);
      for (let i = 0; i < 3; i++) {
        const r = await timed(db.prisma.trainingJob.count());
        expect(isDatabaseUnavailable(r.err), String(r.err)).toBe(true);
      }
      server = await listen();
      expect(await db.prisma.trainingJob.count()).toBe(0);
    } finally {
      await db.close();
      const closed = new Promise((r) => server.close(r));
      for (const s of links) s.destroy();
      await closed;
      fs.rmSync(dir, { recursive: true, force: true });
      await dropSchema(schema);
    }
  });
});
