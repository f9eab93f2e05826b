// PostgreSQL as a deployment's services meet it when they start first (docker compose, systemd, a
// fleet's scheduler): not listening yet, then still starting up, when it answers each connection
// with SQLSTATE 57P03 "the database system is starting up". `qatserve api` and `qatserve worker`
// wait for it, say so once and where, and start once it takes connections. Before, each exited:
// one line for the refused connection, pg's error with its stack for 57P03; without a restart
// policy the service stayed down. One-off commands (`qatserve migrate`) still say so and exit.
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { JobView } from '../../src/jobs/job-view.js';
import { apiEnv, bearer, call, createKey, runCli, startApi, type ApiProcess } from '../api/api-process.js';
import { dropSchema, PG_BASE, pgUrl, uniqueSchema } from '../db/test-databases.js';
import { freePort, linesWith, waitForJob } from './serve-process.js';
import { spawnWorker, tinyJob, type WorkerProc } from './worker-process.js';

const PG_PORT = Number(new URL(PG_BASE).port || 5432);

/** PostgreSQL's ErrorResponse to a connection while it starts up, as the server sends it. */
function startingUpError(): Buffer {
  const field = (type: string, value: string) => Buffer.from(`${type}${value}\0`);
  const body = Buffer.concat([
    field('S', 'FATAL'),
    field('V', 'FATAL'),
    field('C', '57P03'),
    field('M', 'the database system is starting up'),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write('E', 0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/**
 * The test's PostgreSQL on its own port, through the phases of a server's start: nothing listens
 * until listen(); then each connection is answered "starting up" and closed; after up(), each
 * reaches the real server.
 */
class StartingPostgres {
  private server: net.Server | null = null;
  private isUp = false;
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly port: number) {}

  async listen(): Promise<void> {
    const server = net.createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
  }

  up(): void {
    this.isUp = true;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private track(s: net.Socket): void {
    s.on('error', () => {});
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
  }

  private accept(client: net.Socket): void {
    this.track(client);
    // The startup message comes first; the answer to it says the server cannot take it yet.
    if (!this.isUp) return void client.once('data', () => client.end(startingUpError()));
    const upstream = net.connect(PG_PORT, '127.0.0.1');
    this.track(upstream);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PostgreSQL not up yet when the services start', () => {
  const schema = uniqueSchema('start_order');
  let pgStarting: StartingPostgres | undefined;
  let api: ApiProcess | undefined;
  let worker: WorkerProc | undefined;
  afterAll(async () => {
    if (worker && worker.proc.exitCode === null) worker.proc.kill('SIGKILL');
    await api?.stop();
    await pgStarting?.close();
    await dropSchema(schema);
  });

  it('`qatserve api` and `qatserve worker` wait for it, say so once, then serve and train', async () => {
    const port = await freePort();
    const pgStart = new StartingPostgres(port);
    pgStarting = pgStart;
    const url = new URL(pgUrl(schema));
    url.port = String(port);
    const env = apiEnv('pg-start-order', { DATABASE_URL: url.toString(), ARTIFACT_STORE: 'postgres' });
    // The key is made on the real server; the services go through the one still to start.
    const key = await createKey({ ...env, DATABASE_URL: pgUrl(schema) }, 'ops', 'admin');

    const apiStarted = startApi(env);
    apiStarted.catch(() => {}); // awaited below; the phases run meanwhile
    worker = spawnWorker({ ...env, QATSERVE_SKIP_MIGRATE: '' }, 'pg-start-order');
    const w = worker;
    // Refused for 2 s, "starting up" for 2 s (the old services were gone after the first try).
    await sleep(2000);
    await pgStart.listen();
    await sleep(2000);
    expect(w.proc.exitCode, w.output()).toBeNull();
    pgStart.up();
    api = await apiStarted;

    const waiting = `PostgreSQL at 127.0.0.1:${port} cannot be reached (connect ECONNREFUSED 127.0.0.1:${port}): check DATABASE_URL and that the server runs; trying again every 2 s until it answers`;
    const answers = `PostgreSQL at 127.0.0.1:${port} answers`;
    for (const log of [api.log(), w.output()]) {
      expect(linesWith(log, waiting), log).toBe(1);
      expect(linesWith(log, answers), log).toBe(1);
      expect(log).not.toMatch(/^\s+at /m);
    }

    const res = await call(api.base, 'POST', '/v1/jobs', bearer(key), tinyJob(4));
    expect(res.status, res.text).toBe(201);
    const job = await waitForJob(api.base, JobView.parse(res.json).id, 120_000, bearer(key));
    expect(job.status, `${JSON.stringify(job.error)}\n${w.output()}`).toBe('succeeded');
  }, 180_000);

  it('`qatserve migrate`, a one-off command, says in one line that the server is starting up, and exits', async () => {
    const port = await freePort();
    const pgStart = new StartingPostgres(port);
    await pgStart.listen();
    try {
      const r = await runCli(['migrate'], apiEnv('pg-starting-migrate', { DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/test` }));
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`PostgreSQL at 127.0.0.1:${port} takes no connections now (the database system is starting up)`);
    } finally {
      await pgStart.close();
    }
  });
});
