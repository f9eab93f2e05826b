// A deployment whose machines share PostgreSQL through PgBouncer in transaction pooling, the usual
// pooler in front of a database many machines use (and what hosted poolers run). Until the
// fiftieth session nothing got through it: every connection sent the schema as a startup option,
// which PgBouncer refuses ("unsupported startup parameter: options"), so /readyz said the
// database was failing and every request but the public ones answered 503. A session setting would not do
// either: PgBouncer hands a server connection to other clients after each transaction.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobView } from '../../src/jobs/job-view.js';
import { startHarness, waitReady, type Harness } from '../api/api-harness.js';
import { PG_BASE } from '../db/test-databases.js';
import { freePort } from './serve-process.js';
import { assertBuilt, spawnWorker, tinyJob, waitForJob, type WorkerProc } from './worker-process.js';

/** PgBouncer on a free port, in front of the test PostgreSQL, pooling by transaction. */
async function startPgBouncer(): Promise<{ proc: ChildProcess; base: string; dir: string }> {
  const port = await freePort();
  const pg = new URL(PG_BASE);
  const user = pg.username || 'postgres';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-pgbouncer-'));
  fs.chmodSync(dir, 0o755); // PgBouncer will not run as root: as root, it runs as postgres below
  fs.writeFileSync(path.join(dir, 'users.txt'), `"${user}" ""\n`);
  fs.writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `test = host=${pg.hostname} port=${pg.port || 5432} dbname=${pg.pathname.slice(1)} user=${user}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      'default_pool_size = 4',
      'unix_socket_dir =',
      '',
    ].join('\n'),
  );
  for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o644);
  const ini = path.join(dir, 'pgbouncer.ini');
  const command = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', 'pgbouncer', ini] : ['pgbouncer', ini];
  const proc = spawn(command[0], command.slice(1), { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (up) return { proc, base: `postgresql://${user}@127.0.0.1:${port}/test`, dir };
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`pgbouncer did not start (exit ${proc.exitCode})`);
}

describe('PostgreSQL through PgBouncer (transaction pooling)', () => {
  let bouncer: Awaited<ReturnType<typeof startPgBouncer>>;
  let h: Harness;
  let worker: WorkerProc | undefined;
  beforeAll(async () => {
    bouncer = await startPgBouncer();
    // Migrated through it too, models and checkpoints kept in the database: nothing else shared.
    h = await startHarness('postgres', { ARTIFACT_STORE: 'postgres' }, bouncer.base);
  });
  afterAll(async () => {
    if (worker && worker.proc.exitCode === null) worker.proc.kill('SIGKILL');
    await h?.close();
    bouncer?.proc.kill('SIGTERM');
    if (bouncer) fs.rmSync(bouncer.dir, { recursive: true, force: true });
  });

  it('serves: jobs train on a worker, a model serves from the store, a job starts from another, a finished one is deleted', async () => {
    assertBuilt();
    await waitReady(h, 10_000);
    const s = h.settings;
    worker = spawnWorker({ DATABASE_URL: s.databaseUrl, DATA_DIR: h.dir, QUEUE_PREFIX: s.queuePrefix, ARTIFACT_STORE: 'postgres' }, 'pgbouncer');
    const run = async (config: object) => {
      const res = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: config });
      expect(res.statusCode, res.body).toBe(201);
      const done = await waitForJob(h.app, JobView.parse(res.json()).id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status), 120_000, [worker!]);
      expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
      return done;
    };
    const first = await run(tinyJob(4));
    // init.fromJob locks the source's row (a raw statement in a transaction).
    const second = await run({ ...tinyJob(4), init: { fromJob: first.id } });
    const served = await h.app.inject({ method: 'GET', url: `/v1/models/${second.model!.id}/download` });
    expect([served.statusCode, served.rawPayload.length > 1000]).toEqual([200, true]);
    // The first job's model no longer serves: deleting it takes the row locks of a deletion.
    const gone = await h.app.inject({ method: 'DELETE', url: `/v1/jobs/${first.id}` });
    expect(gone.statusCode, gone.body).toBe(204);
    expect((await h.app.inject({ method: 'GET', url: `/v1/jobs/${first.id}` })).statusCode).toBe(404);
  });
});
