// Redis as operators meet it: not up yet, turning a wrong password away, at its maxclients, in cluster mode, a read-only replica, restarted without its
// data, set to evict keys or full, speaking only TLS, failing over to a replica, without REDIS_URL's database. A deployment's services start in any order (compose, systemd, a fleet's restart): a
// worker started before its Redis waits for it, says where it looks, and trains once Redis
// answers. Before, it exited within a second with ioredis's bare "Error: Connection is closed."
// and its stack, and `qatserve serve` restarted it in a loop, printing the same each time.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { JobView } from '../../src/jobs/job-view.js';
import { startHarness, waitReady, type Harness } from '../api/api-harness.js';
import { apiEnv, startApi, type ApiProcess } from '../api/api-process.js';
import { PartitionProxy } from './partition-proxy.js';
import { freePort, linesWith, waitForJob as waitForJobAt } from './serve-process.js';
import { assertBuilt, killWorker, spawnWorker, tinyJob, waitForJob, type WorkerProc } from './worker-process.js';

/** Polls `cond`; fails at once when `gone` says the process exited (with its log). */
async function until(cond: () => boolean, timeoutMs: number, what: string, gone: () => string | null = () => null): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    const exited = gone();
    if (exited) throw new Error(`${exited} before ${what}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Each test Redis runs in a directory of its own: a replica saves the copy it syncs as dump.rdb
 * where it runs, and a Redis started later in the same place loaded it (a cluster-mode node then
 * refused its slots: the second run of this file in one checkout failed).
 */
const redisDirs: string[] = [];

const startRedis = (port: number, ...args: string[]) => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-redis-'));
  redisDirs.push(cwd);
  return spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args], { stdio: 'ignore', cwd });
};

/** This test's own connection to a Redis it sets up (it may start after the connection: retried every 50 ms). */
function adminOn(redisUrl: string): Redis {
  const admin = new Redis(redisUrl, { retryStrategy: () => 50 });
  admin.on('error', () => {});
  return admin;
}

/** A worker on `h`'s database and queue, talking to `redisUrl`. */
const workerOn = (h: Harness, redisUrl: string, label: string) =>
  spawnWorker({ DATABASE_URL: h.settings.databaseUrl, DATA_DIR: h.settings.dataDir, QUEUE_PREFIX: h.settings.queuePrefix, REDIS_URL: redisUrl }, label);

/** For until(): why the worker cannot be waited on any more, or null while it runs. */
const exitedWith = (w: WorkerProc) => () => (w.proc.exitCode === null ? null : `the worker exited (code ${w.proc.exitCode}):\n${w.output()}`);

/**
 * A worker on `redisUrl` says `line` once and logs no "queue error": Bull tries its next-job wait
 * every 5 s, and each refusal was a "queue error" with a stack before. `started` hears of the
 * worker at once, for the caller to kill.
 */
async function workerSaysOnce(own: Harness, redisUrl: string, label: string, line: string, started: (w: WorkerProc) => void): Promise<void> {
  const worker = workerOn(own, redisUrl, label);
  started(worker);
  await until(() => worker.output().includes(line), 30_000, `the worker's ${label} line`, exitedWith(worker));
  await new Promise((r) => setTimeout(r, 5500));
  expect(linesWith(worker.output(), line)).toBe(1);
  expect(worker.output()).not.toContain('queue error');
}

describe('Redis not up yet, turning a password away, at its maxclients, restarted without its data, evicting, full, in cluster mode, a replica, failing over, without the database, or TLS-only', () => {
  let h: Harness | undefined;
  let worker: WorkerProc | undefined;
  let api: ApiProcess | undefined;
  const redises: ChildProcess[] = [];
  afterAll(async () => {
    if (worker && worker.proc.exitCode === null) worker.proc.kill('SIGKILL');
    await api?.stop();
    for (const r of redises) if (r.exitCode === null) r.kill('SIGKILL');
    await h?.close();
    for (const dir of redisDirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A redis-server of this test's own, started with `args`, and a harness (SQLite) whose queue is on it. */
  async function harnessOnRedis(...args: string[]): Promise<{ port: number; redisUrl: string; own: Harness }> {
    assertBuilt();
    const port = await freePort();
    const redisUrl = `redis://127.0.0.1:${port}`;
    redises.push(startRedis(port, ...args));
    return { port, redisUrl, own: await startHarness('sqlite', { REDIS_URL: redisUrl }) };
  }

  it('a worker waits for Redis, saying where it looks, then trains a job', async () => {
    assertBuilt();
    const port = await freePort();
    const redisUrl = `redis://127.0.0.1:${port}`;
    h = await startHarness('sqlite', { REDIS_URL: redisUrl });
    worker = workerOn(h, redisUrl, 'before-redis');
    const w = worker;
    const gone = exitedWith(w);
    await until(() => w.output().includes(`Redis at 127.0.0.1:${port} cannot be reached (connect ECONNREFUSED`), 30_000, "the worker's wait message", gone);
    // The old worker was gone 0.6 s after its first try.
    await new Promise((r) => setTimeout(r, 2000));
    expect(w.proc.exitCode, w.output()).toBeNull();

    redises.push(startRedis(port));
    await waitReady(h, 10_000);
    await until(() => w.output().includes('worker waiting for jobs'), 15_000, 'the worker to take jobs', gone);
    const res = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(4) });
    expect(res.statusCode).toBe(201);
    const done = await waitForJob(h.app, JobView.parse(res.json()).id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 120_000, [w]);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');

    // One line for the outage, however many reconnect attempts; no stack.
    const out = w.output();
    expect(out).not.toMatch(/^\s+at /m);
    expect(linesWith(out, 'cannot be reached')).toBe(1);
    expect(out).toContain(`"msg":"Redis at 127.0.0.1:${port} answers"`);
  });

  it('`qatserve api` says once per outage that its Redis cannot be reached, and when it answers', async () => {
    const port = await freePort();
    api = await startApi(apiEnv('api-redis', { REDIS_URL: `redis://127.0.0.1:${port}` }));
    const a = api;
    const down = `Redis at 127.0.0.1:${port} cannot be reached (connect ECONNREFUSED`;
    await until(() => a.log().includes(down), 15_000, 'the first outage line');
    // ioredis tries again after 50, 100, ... ms, up to every 2 s: several attempts, still one line.
    await new Promise((r) => setTimeout(r, 3000));
    expect(linesWith(a.log(), down)).toBe(1);
    const redis = startRedis(port);
    redises.push(redis);
    await until(() => a.log().includes(`Redis at 127.0.0.1:${port} answers`), 15_000, 'the line saying Redis answers');
    redis.kill('SIGTERM');
    await until(() => linesWith(a.log(), down) === 2, 15_000, 'the second outage line');
    expect(a.log()).not.toMatch(/^\s+at /m);
  });

  it('`qatserve api` and a worker each say once that their Redis may drop keys when full (an evicting maxmemory-policy)', async () => {
    const { port, redisUrl, own } = await harnessOnRedis('--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru');
    const a = await startApi(apiEnv('api-evicting', { REDIS_URL: redisUrl }));
    const w = workerOn(own, redisUrl, 'evicting');
    try {
      const line = `Redis at 127.0.0.1:${port} drops keys when it holds maxmemory 64 MiB (maxmemory-policy allkeys-lru)`;
      await until(() => a.log().includes(line), 15_000, "the API's eviction line");
      await until(() => w.output().includes(line) && w.output().includes('worker waiting for jobs'), 30_000, "the worker's eviction line", exitedWith(w));
      expect([linesWith(a.log(), line), linesWith(w.output(), line)]).toEqual([1, 1]);
      expect(a.log()).toContain('set maxmemory-policy noeviction on it');
    } finally {
      await killWorker(w);
      await a.stop();
      await own.close();
    }
  });

  it('a full Redis (noeviction at its maxmemory): /readyz and a POST say the queue is full and nothing is stored; a worker says it once, then when it has room, and trains', async () => {
    const { port, redisUrl, own } = await harnessOnRedis('--maxmemory', '8mb', '--maxmemory-policy', 'noeviction');
    const filler = new Redis(redisUrl);
    let w: WorkerProc | undefined;
    try {
      await waitReady(own, 10_000);
      // Another tenant's keys fill it (a shared Redis), to the last bytes: a refused large write
      // leaves room for small ones.
      for (const size of [100_000, 1000, 10])
        for (let i = 0; ; i++) if ((await filler.set(`tenant:${size}:${i}`, 'x'.repeat(size)).catch(() => null)) === null) break;
      const refused = await own.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(4) });
      expect(refused.statusCode).toBe(503);
      expect(refused.json()).toMatchObject({
        error: { code: 'QUEUE_UNAVAILABLE', message: expect.stringMatching(/^the job queue is full: its Redis reached its memory limit/) },
      });
      expect((await own.app.inject({ method: 'GET', url: '/v1/jobs' })).json()).toMatchObject({ jobs: [] });
      // /readyz said ready before the fifty-second session.
      const full = await own.app.inject({ method: 'GET', url: '/readyz' });
      expect([full.statusCode, full.json().checks.queue]).toEqual([503, expect.stringContaining(`Redis at 127.0.0.1:${port} is full`)]);

      const worker = workerOn(own, redisUrl, 'redis-full');
      w = worker;
      const line = `Redis at 127.0.0.1:${port} is full: its memory reached its maxmemory and it refuses writes (OOM)`;
      await until(() => worker.output().includes(line), 30_000, "the worker's full-Redis line", exitedWith(worker));
      // Bull tries the next-job wait again every 5 s and the state entry is written every 5 s:
      // each refusal was a "queue error" with its stack before.
      await new Promise((r) => setTimeout(r, 6000));
      expect(linesWith(worker.output(), line)).toBe(1);
      expect(worker.output()).not.toContain('queue error');

      await filler.del(...(await filler.keys('tenant:*')));
      await until(() => worker.output().includes(`Redis at 127.0.0.1:${port} has room again`), 15_000, 'the room-again line', exitedWith(worker));
      expect((await own.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
      const res = await own.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(4) });
      expect(res.statusCode).toBe(201);
      const done = await waitForJob(own.app, JobView.parse(res.json()).id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 120_000, [worker]);
      expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
      expect(worker.output()).not.toMatch(/^\s+at /m);
    } finally {
      filler.disconnect();
      if (w) await killWorker(w);
      await own.close();
    }
  });

  // A managed Redis with clustering on (ElastiCache's cluster mode, Azure Cache clustering) holds no
  // Bull queue. Until the fifty-second session /readyz said ready, each POST answered "the job
  // queue is unreachable: CROSSSLOT ..." and the worker logged that with a stack every 5 s.
  it('a Redis in cluster mode: /readyz and a POST say so, and a worker says it once', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-cluster-'));
    const { port, redisUrl, own } = await harnessOnRedis('--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'));
    const admin = adminOn(redisUrl);
    let w: WorkerProc | undefined;
    try {
      // One node holding every slot: a cluster all the same (multi-key commands must share a slot).
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      const line = `Redis at 127.0.0.1:${port} runs in cluster mode (cluster_enabled:1), which cannot hold the job queue`;
      const ready = await own.app.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json().checks.queue).toContain(line);
      const refused = await own.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(4) });
      expect(refused.json()).toMatchObject({
        error: { code: 'QUEUE_UNAVAILABLE', message: expect.stringMatching(/^the job queue cannot run on its Redis: it runs in cluster mode/) },
      });
      await workerSaysOnce(own, redisUrl, 'cluster', line, (started) => (w = started));
    } finally {
      admin.disconnect();
      if (w) await killWorker(w);
      await own.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  // Many managed services offer only database 0; redis.conf's `databases` is 16. Before, ioredis
  // went on in database 0: /readyz ready, jobs queued there, the worker's log a stack per connection.
  it('a REDIS_URL database the server does not have: /readyz and a POST say so, nothing is queued, and a worker says it once', async () => {
    assertBuilt();
    const port = await freePort();
    redises.push(startRedis(port, '--databases', '2'));
    const redisUrl = `redis://127.0.0.1:${port}/5`;
    const admin = adminOn(`redis://127.0.0.1:${port}`);
    const own = await startHarness('sqlite', { REDIS_URL: redisUrl });
    let w: WorkerProc | undefined;
    try {
      const line = `REDIS_URL asks for database 5, which Redis at 127.0.0.1:${port} does not have (ERR DB index is out of range)`;
      const ready = async () => {
        const res = await own.app.inject({ method: 'GET', url: '/readyz' });
        return [res.statusCode, res.json<{ checks: { queue: string } }>().checks.queue.includes(line)];
      };
      await expect.poll(ready, { timeout: 10_000, interval: 200 }).toEqual([503, true]);
      const refused = await own.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(4) });
      expect(refused.statusCode).toBe(503);
      expect(refused.json().error).toMatchObject({ code: 'QUEUE_UNAVAILABLE', message: expect.stringMatching(/it has no database of REDIS_URL's number/) });
      expect(await admin.keys(`${own.settings.queuePrefix}:*`)).toEqual([]);
      await workerSaysOnce(own, redisUrl, 'database', line, (started) => (w = started));
    } finally {
      admin.disconnect();
      if (w) await killWorker(w);
      await own.close();
    }
  });

  // A reader endpoint, or a primary a failover demoted while REDIS_URL still names it.
  it('a read-only replica: /readyz and a POST say so, and both take jobs once it is promoted', async () => {
    const primaryPort = await freePort();
    redises.push(startRedis(primaryPort));
    const { port, redisUrl, own } = await harnessOnRedis('--replicaof', '127.0.0.1', String(primaryPort));
    const admin = adminOn(redisUrl);
    try {
      await new Promise((r) => admin.once('ready', r));
      const ready = await own.app.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json().checks.queue).toContain(`Redis at 127.0.0.1:${port} is a read-only replica (of 127.0.0.1:${primaryPort})`);
      const refused = await own.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(4) });
      expect(refused.json()).toMatchObject({
        error: { code: 'QUEUE_UNAVAILABLE', message: expect.stringMatching(/^the job queue cannot run on its Redis: it is a read-only replica/) },
      });
      await admin.call('REPLICAOF', 'NO', 'ONE');
      expect((await own.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
      expect((await own.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(4) })).statusCode).toBe(201);
    } finally {
      admin.disconnect();
      await own.close();
    }
  });

  // A managed Redis's failover: the replica promoted, the primary endpoint's name moved to it, the
  // old primary kept as its replica. Before, the connections made before stayed on the old one:
  // /readyz said "replica" and every POST 503 until the processes restarted.
  it("a failover that moves REDIS_URL's name to the promoted replica: `qatserve api` and a worker follow it without a restart", async () => {
    const [oldPort, newPort] = [await freePort(), await freePort()];
    redises.push(startRedis(oldPort), startRedis(newPort, '--replicaof', '127.0.0.1', String(oldPort)));
    const proxy = await PartitionProxy.start(oldPort);
    const redisUrl = `redis://127.0.0.1:${proxy.port}`;
    const [oldPrimary, newPrimary] = [adminOn(`redis://127.0.0.1:${oldPort}`), adminOn(`redis://127.0.0.1:${newPort}`)];
    const a = await startApi(apiEnv('api-failover', { REDIS_URL: redisUrl, RECONCILE_INTERVAL_MS: '2000' }));
    const w = spawnWorker({ DATABASE_URL: a.env.DATABASE_URL, DATA_DIR: a.dir, QUEUE_PREFIX: a.env.QUEUE_PREFIX, REDIS_URL: redisUrl }, 'failover');
    try {
      await until(() => w.output().includes('worker waiting for jobs'), 30_000, 'the worker is waiting for jobs', exitedWith(w));
      const failedOverAt = Date.now();
      await newPrimary.call('REPLICAOF', 'NO', 'ONE');
      await oldPrimary.call('REPLICAOF', '127.0.0.1', String(newPort));
      proxy.moveTo(newPort);
      await expect.poll(async () => (await fetch(`${a.base}/readyz`)).status, { timeout: 20_000, interval: 500 }).toBe(200);
      const res = await fetch(`${a.base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(tinyJob(2)) });
      expect(res.status, await res.clone().text()).toBe(201);
      const done = await waitForJobAt(a.base, JobView.parse(await res.json()).id, 60_000);
      expect(done.status, `${JSON.stringify(done.error)}\n${w.output()}`).toBe('succeeded');
      // The worker's beats (written on a connection no check reads from) reach the new primary.
      const beatSince = async () => {
        const { workers } = (await (await fetch(`${a.base}/v1/workers`)).json()) as { workers: Array<{ seenAt: string }> };
        return workers.some((x) => Date.parse(x.seenAt) > failedOverAt);
      };
      await expect.poll(beatSince, { timeout: 15_000, interval: 500 }).toBe(true);
      // Nothing but subscriptions (which the new primary's messages still reach through
      // replication) stays on the old server: a publisher left there (the API's, which cancels
      // go through) reached only the subscribers that happened to be there too.
      const ownId = Number(await oldPrimary.call('CLIENT', 'ID'));
      const leftBehind = async () =>
        String(await oldPrimary.call('CLIENT', 'LIST', 'TYPE', 'normal'))
          .split('\n')
          .filter((l) => l && !/ flags=\S*P/.test(l) && !l.startsWith(`id=${ownId} `));
      await expect.poll(leftBehind, { timeout: 15_000, interval: 500 }).toEqual([]);
      expect(a.log()).toContain('can hold the job queue again');
    } finally {
      await killWorker(w);
      oldPrimary.disconnect();
      newPrimary.disconnect();
      await a.stop();
      await proxy.close();
    }
  });

  it('a TLS-only Redis (rediss://, as managed services run them): the API is ready and queues, a worker trains', async () => {
    assertBuilt();
    // A CA and a certificate for 127.0.0.1 signed by it; the processes trust the CA as an
    // operator's would (NODE_EXTRA_CA_CERTS).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-tls-'));
    const at = (f: string) => path.join(dir, f);
    const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('ca.key'), '-out', at('ca.crt'), '-days', '2', '-subj', '/CN=qatserve-test-ca');
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('redis.key'), '-out', at('redis.csr'), '-subj', '/CN=127.0.0.1');
    fs.writeFileSync(at('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    openssl(
      'x509',
      '-req',
      '-in',
      at('redis.csr'),
      '-CA',
      at('ca.crt'),
      '-CAkey',
      at('ca.key'),
      '-CAcreateserial',
      '-out',
      at('redis.crt'),
      '-days',
      '2',
      '-extfile',
      at('ext.cnf'),
    );
    const port = await freePort();
    redises.push(
      spawn(
        'redis-server',
        ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'].concat([
          '--tls-cert-file',
          at('redis.crt'),
          '--tls-key-file',
          at('redis.key'),
          '--tls-ca-cert-file',
          at('ca.crt'),
          '--tls-auth-clients',
          'no',
        ]),
        { stdio: 'ignore' },
      ),
    );
    const tls = { REDIS_URL: `rediss://127.0.0.1:${port}`, NODE_EXTRA_CA_CERTS: at('ca.crt') };
    const a = await startApi(apiEnv('api-tls', tls));
    const w = spawnWorker({ DATABASE_URL: a.env.DATABASE_URL, DATA_DIR: a.dir, QUEUE_PREFIX: a.env.QUEUE_PREFIX, ...tls }, 'tls');
    try {
      // Before: 503, "queue error: queue connection is reconnecting", for ever.
      let ready: Response | null = null;
      for (let i = 0; i < 50 && ready?.status !== 200; i++) {
        if (i) await new Promise((r) => setTimeout(r, 200));
        ready = await fetch(`${a.base}/readyz`);
      }
      expect(ready?.status, await ready?.text()).toBe(200);
      const res = await fetch(`${a.base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(tinyJob(4)) });
      expect(res.status).toBe(201);
      const done = await waitForJobAt(a.base, JobView.parse(await res.json()).id, 120_000);
      expect(done.status, `${JSON.stringify(done.error)}\n${w.output()}`).toBe('succeeded');

      // A worker that does not trust the CA: what to do, said once (Bull's three connections logged
      // a "queue error" with its stack on each attempt).
      const untrusting = spawnWorker(
        { DATABASE_URL: a.env.DATABASE_URL, DATA_DIR: a.dir, QUEUE_PREFIX: a.env.QUEUE_PREFIX, REDIS_URL: tls.REDIS_URL },
        'tls-untrusted',
      );
      try {
        const line = `Redis at 127.0.0.1:${port} sent a TLS certificate this process does not accept (self-signed certificate in certificate chain): trust the CA that signed it with NODE_EXTRA_CA_CERTS=<file>`;
        await until(() => untrusting.output().includes(line), 30_000, 'the certificate line', exitedWith(untrusting));
        await new Promise((r) => setTimeout(r, 3000));
        expect(linesWith(untrusting.output(), line)).toBe(1);
        expect(untrusting.output()).not.toContain('queue error');
      } finally {
        await killWorker(untrusting);
      }
    } finally {
      await killWorker(w);
      await a.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a worker with the wrong password says so once, not once per attempt, and keeps waiting', async () => {
    const port = await freePort();
    assertBuilt();
    const redis = startRedis(port, '--requirepass', 'right');
    redises.push(redis);
    const redisUrl = `redis://:wrong@127.0.0.1:${port}`;
    const own = await startHarness('sqlite', { REDIS_URL: redisUrl });
    const w = workerOn(own, redisUrl, 'wrong-password');
    const gone = exitedWith(w);
    try {
      const line = `Redis at 127.0.0.1:${port} cannot be used (WRONGPASS`;
      await until(() => w.output().includes(line), 30_000, 'the wrong-password line', gone);
      // ioredis retries after 50, 100, ... ms: many refusals in 3 s, each a "queue error" with a stack before.
      await new Promise((r) => setTimeout(r, 3000));
      expect(gone()).toBeNull();
      expect(linesWith(w.output(), line)).toBe(1);
      expect(w.output()).not.toContain('queue error');
    } finally {
      await killWorker(w);
      await own.close();
    }
  });

  // A managed Redis caps its connections (20 or 30 on small plans); a fleet's processes hold several
  // each. Until the fifty-second session a worker that got its first connection but not the
  // others said nothing at all, and took no job.
  it("a worker turned away by a Redis at its maxclients says so in Redis's words, once, and starts once it gets its connections", async () => {
    const port = await freePort();
    assertBuilt();
    redises.push(startRedis(port, '--maxclients', '3'));
    // One slot is this test's (to raise the limit with), two are the worker's first connections
    // (its queue's and its own): its others (the cancel subscription's, the queue's blocking one)
    // are turned away.
    const admin = adminOn(`redis://127.0.0.1:${port}`);
    await new Promise((r) => admin.once('ready', r));
    const own = await startHarness('sqlite');
    const w = workerOn(own, `redis://127.0.0.1:${port}`, 'maxclients');
    const gone = exitedWith(w);
    try {
      // Redis's words are quoted in the line, escaped in the JSON log.
      const line = `Redis at 127.0.0.1:${port} turns this connection away: it holds its maxclients connections (\\"ERR max number of clients reached\\")`;
      await until(() => w.output().includes(line), 30_000, 'the maxclients line', gone);
      await new Promise((r) => setTimeout(r, 2000));
      expect(linesWith(w.output(), line)).toBe(1);
      expect(w.output()).not.toContain('worker waiting for jobs');
      await admin.config('SET', 'maxclients', '100');
      await until(() => w.output().includes('worker waiting for jobs'), 30_000, 'the worker to start', gone);
      // Said once its connections have stayed up a second.
      await until(() => w.output().includes(`Redis at 127.0.0.1:${port} answers`), 10_000, 'the answers line', gone);
      expect(linesWith(w.output(), line)).toBe(1);
    } finally {
      admin.disconnect();
      await killWorker(w);
      await own.close();
    }
  });

  it('a job trained through a Redis restart that lost its data succeeds on its first attempt, logged as a warning', async () => {
    assertBuilt();
    const port = await freePort();
    const redisUrl = `redis://127.0.0.1:${port}`;
    const first = startRedis(port);
    redises.push(first);
    const own = await startHarness('sqlite', { REDIS_URL: redisUrl });
    const w = workerOn(own, redisUrl, 'redis-lost');
    try {
      await waitReady(own, 10_000);
      const res = await own.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinyJob(60, { checkpointEverySteps: 10 }) });
      const id = JobView.parse(res.json()).id;
      await waitForJob(own.app, id, (j) => j.progress.step >= 3, 120_000, [w]);
      // No persistence configured: the queue, its entry and lock go with the server.
      const exited = new Promise((r) => first.once('exit', r));
      first.kill('SIGTERM');
      await exited;
      await new Promise((r) => setTimeout(r, 1000));
      redises.push(startRedis(port));
      const done = await waitForJob(own.app, id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 180_000, [w]);
      expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
      expect(done.attempts).toBe(1);
      // The row says succeeded before Bull moves the entry: its warning comes a moment later (a
      // test under load read the log first, twice).
      const gone = "queue: a job's queue entry was gone when this worker finished with it";
      await until(() => w.output().includes(gone), 10_000, 'the entry-gone warning', exitedWith(w));
      const out = w.output();
      expect(out, out).not.toContain('queue error');
      expect(out).not.toMatch(/^\s+at /m);
    } finally {
      await killWorker(w);
      await own.close();
    }
  });
});
