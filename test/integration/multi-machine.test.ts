// Many machines, for real: processes that share nothing but PostgreSQL and Redis. Every process
// has its own DATA_DIR and ARTIFACTS_DIR (as separate machines would), artifacts live in
// PostgreSQL (ARTIFACT_STORE's default with a PostgreSQL DATABASE_URL), and no queue prefix is set
// (each deployment derives its own from its database's deployment id).
//
//   API A, API C, worker B  -- deployment 1 (PostgreSQL schema 1) --  worker D, worker G
//   worker E                -- deployment 2 (PostgreSQL schema 2), the same Redis
//
// A job posted to A is trained by B until B is killed with SIGKILL; D resumes it from the
// checkpoint in the store (attempt 2, from a step > 0, metric steps continuous); C, which never
// saw any of it, serves the model on /v1/predict; G, a new worker on B's machine, clears what B
// left there and starts a new job from the first job's checkpoint (init.fromJob). E, idle on the
// same Redis, never touches deployment 1's jobs.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrainingConfig } from '../../src/config/training-config.js';
import { estimateJob } from '../../src/jobs/job-admission.js';
import { JobQueuePlace, JobView, MetricsPage } from '../../src/jobs/job-view.js';
import { dropSchema, pgUrl, uniqueSchema } from '../db/test-databases.js';
import { freePort } from './serve-process.js';
import { assertBuilt, CLI, FAST_QUEUE_ENV, killWorker, spawnWorker, tinyJob, type WorkerProc } from './worker-process.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-fleet-'));
const schemas = [uniqueSchema('fleet_one'), uniqueSchema('fleet_two'), uniqueSchema('fleet_three'), uniqueSchema('fleet_four'), uniqueSchema('fleet_five')];
const children: ChildProcess[] = [];
type Deployment = 0 | 1 | 2 | 3 | 4;

/** One "machine": its own data and artifact directories, nothing shared on disk. */
function machine(name: string, deployment: Deployment): Record<string, string> {
  const dir = path.join(root, name);
  fs.mkdirSync(path.join(dir, 'artifacts'), { recursive: true });
  return {
    DATABASE_URL: pgUrl(schemas[deployment]),
    DATA_DIR: dir,
    ARTIFACTS_DIR: path.join(dir, 'artifacts'),
    // Each machine migrates at start, as `qatserve worker` and `qatserve api` do (a no-op once done).
    QATSERVE_SKIP_MIGRATE: '',
  };
}

function worker(name: string, deployment: Deployment, label = name, env: Record<string, string> = {}): WorkerProc {
  const w = spawnWorker({ ...machine(name, deployment), ...env }, label);
  children.push(w.proc);
  return w;
}

interface Api {
  base: string;
  dir: string;
  log(): string;
}

async function api(name: string, deployment: Deployment, extra: Record<string, string> = {}): Promise<Api> {
  const env = { ...machine(name, deployment), ...extra };
  const port = await freePort();
  const log = path.join(env.DATA_DIR, `api-${name}.log`);
  const fd = fs.openSync(log, 'w');
  const proc = spawn(process.execPath, [CLI, 'api'], {
    env: { ...process.env, ...FAST_QUEUE_ENV, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', PREDICT_WORKERS: '1', MODEL_POLL_MS: '500' },
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  children.push(proc);
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (
      await fetch(`${base}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { base, dir: env.DATA_DIR, log: () => fs.readFileSync(log, 'utf8') };
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`API ${name} did not become ready:\n${fs.readFileSync(log, 'utf8').slice(-3000)}`);
}

const getJob = async (a: Api, id: string) => JobView.parse(await (await fetch(`${a.base}/v1/jobs/${id}`)).json());
async function until(a: Api, id: string, pred: (j: JobView) => boolean, ms: number, logs: () => string): Promise<JobView> {
  const end = Date.now() + ms;
  for (;;) {
    const j = await getJob(a, id);
    if (pred(j)) return j;
    if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify({ status: j.status, progress: j.progress, error: j.error })}\n${logs().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const postRaw = (a: Api, body: unknown) =>
  fetch(`${a.base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const post = async (a: Api, body: unknown) => {
  const res = await postRaw(a, body);
  expect(res.status, await res.clone().text()).toBe(201);
  return JobView.parse(await res.json());
};
const logLines = (w: WorkerProc) =>
  w
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown> & { msg: string });
const filesUnder = (dir: string): string[] =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => e.name)
    : [];
const terminal = (j: JobView) => ['succeeded', 'failed', 'cancelled'].includes(j.status);
/** A long job posted to `a` and running on `w` (the only idle worker), so the next job waits for another. */
const keepBusy = async (a: Api, w: WorkerProc): Promise<JobView> => {
  const busy = await post(a, tinyJob(4000, { name: 'busy' }));
  await until(
    a,
    busy.id,
    (x) => x.status === 'running',
    60_000,
    () => w.output().slice(-3000),
  );
  return busy;
};
/** Until the worker has said it takes jobs. */
const ready = async (w: WorkerProc) => {
  for (let i = 0; i < 600 && !logLines(w).some((l) => l.msg === 'worker waiting for jobs'); i++) await new Promise((r) => setTimeout(r, 100));
};

/** `<dataRoot>/<folder>/c<i>/*.png`: `n` classes of `images` small tiles each. */
async function writeClasses(dataRoot: string, folder: string, n: number, images: number): Promise<void> {
  const tile = (r: number, g: number) =>
    sharp({ create: { width: 36, height: 36, channels: 3, background: { r, g, b: 60 } } })
      .png()
      .toBuffer();
  for (let c = 0; c < n; c++) {
    fs.mkdirSync(path.join(dataRoot, folder, `c${c}`), { recursive: true });
    for (let i = 0; i < images; i++) fs.writeFileSync(path.join(dataRoot, folder, `c${c}`, `${i}.png`), await tile((c * 97) % 256, (i * 50 + c * 13) % 256));
  }
}
const config = (folder: string) => ({
  name: folder,
  dataset: { type: 'imagefolder', path: folder, valSplit: 0.2 },
  model: { widthMultiplier: 0.35, inputSize: 32 },
  training: { epochs: 1, batchSize: 4, maxSteps: 4 },
});

describe('many machines: PostgreSQL and Redis shared, nothing else', () => {
  beforeAll(() => assertBuilt());
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const s of schemas) await dropSchema(s);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('a job survives its worker, resumes on another machine from the stored checkpoint, and serves on a third', async () => {
    const a = await api('api-a', 0);
    const b = worker('worker-b', 0);
    const cStarting = api('api-c', 0);
    const e = worker('worker-e', 1);
    const c = await cStarting;
    const logs = () => [b, e].map((w) => w.output().slice(-1500)).join('\n---\n');

    const job = await post(a, tinyJob(16, { checkpointEverySteps: 4, name: 'fleet' }));
    // B trains past a checkpoint and on; then its machine dies.
    await until(a, job.id, (j) => j.progress.step >= 6, 120_000, logs);
    await killWorker(b);
    const atKill = await getJob(c, job.id);
    expect(atKill.status).toBe('running'); // nobody told the database
    const storedBy = logLines(b).filter((l) => l.msg === 'training started' && l.jobId === job.id);
    expect(storedBy).toHaveLength(1);

    const d = worker('worker-d', 0);
    const done = await until(c, job.id, terminal, 180_000, () => `${d.output().slice(-3000)}`);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.attempts).toBe(2);
    // D resumed from the stored checkpoint, not from step 0.
    const resumed = logLines(d).find((l) => l.msg === 'resuming job' && l.jobId === job.id)!;
    expect(resumed).toMatchObject({ attempt: 2, store: 'postgres' });
    expect(resumed.resumeStep as number).toBeGreaterThan(0);
    expect(resumed.resumeFrom).toMatch(new RegExp(`^jobs/${job.id}/checkpoints/step-0000\\d\\d-`));
    expect(logLines(d).find((l) => l.msg === 'training started' && l.jobId === job.id)).toMatchObject({ startStep: resumed.resumeStep });
    const points = MetricsPage.parse(await (await fetch(`${c.base}/v1/jobs/${job.id}/metrics?limit=1000`)).json()).points;
    expect(points.map((p) => p.step)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));

    // C serves the model it never had on its disk: fetched from PostgreSQL into its cache, checked.
    const png = await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 30, g: 160, b: 90 } } })
      .png()
      .toBuffer();
    let pred: Response | null = null;
    for (let i = 0; i < 50; i++) {
      pred = await fetch(`${c.base}/v1/predict?topK=2`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });
      if (pred.status !== 503) break;
      await new Promise((r) => setTimeout(r, 200)); // its registry polls for the new model
    }
    expect(pred!.status, await pred!.clone().text()).toBe(200);
    const answer = (await pred!.json()) as { model: { id: string; jobId: string }; predictions: unknown[] };
    expect(answer.model).toEqual({ id: done.model!.id, jobId: job.id });
    expect(answer.predictions).toHaveLength(2);
    const download = await fetch(`${c.base}/v1/models/${done.model!.id}/download`);
    const bytes = Buffer.from(await download.arrayBuffer());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(done.model!.sha256);
    expect(filesUnder(path.join(c.dir, 'cache', 'models'))).toEqual([`${done.model!.sha256}.onnx`]);

    // B's machine comes back with a new worker, G: it removes the scratch B left of the finished
    // job, and runs a new job from the first one's newest stored checkpoint (written by D).
    expect(fs.readdirSync(path.join(root, 'worker-b', 'work'))).toEqual([job.id]);
    d.proc.kill('SIGTERM');
    await d.exited;
    const g = worker('worker-b', 0, 'worker-g');
    const tuned = await post(c, { ...tinyJob(4, { name: 'fleet-tune' }), init: { fromJob: job.id } });
    const tunedDone = await until(a, tuned.id, terminal, 120_000, () => g.output().slice(-3000));
    expect(tunedDone.status, JSON.stringify(tunedDone.error)).toBe('succeeded');
    expect(logLines(g).find((l) => l.msg === 'starting job' && l.jobId === tuned.id)?.initFrom).toMatch(new RegExp(`^jobs/${job.id}/checkpoints/`));

    // Nothing went through a shared directory: no machine's ARTIFACTS_DIR holds a file, and every
    // worker's scratch space is empty again.
    for (const m of ['api-a', 'api-c', 'worker-b', 'worker-d', 'worker-e']) expect(filesUnder(path.join(root, m, 'artifacts')), m).toEqual([]);
    // (The row says succeeded a moment before the worker has cleaned up: wait for it to let go.)
    for (let i = 0; i < 100 && !logLines(g).some((l) => l.msg === 'job left the worker' && l.jobId === tuned.id); i++)
      await new Promise((r) => setTimeout(r, 50));
    for (const m of ['worker-b', 'worker-d']) expect(fs.readdirSync(path.join(root, m, 'work')), m).toEqual([]);

    // A deleted model leaves no copy on the machines that served it. C moves to the newer model;
    // A deletes the first job; C's copy of its model (last used an hour ago) goes at C's next sweep.
    for (let i = 0; i < 50; i++) {
      const r = await fetch(`${c.base}/v1/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });
      if (r.status === 200 && ((await r.json()) as { model: { id: string } }).model.id === tunedDone.model!.id) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const cacheOfC = path.join(c.dir, 'cache', 'models');
    const hourAgo = new Date(Date.now() - 3600_000);
    fs.utimesSync(path.join(cacheOfC, `${done.model!.sha256}.onnx`), hourAgo, hourAgo);
    expect((await fetch(`${a.base}/v1/jobs/${job.id}`, { method: 'DELETE' })).status).toBe(204);
    for (let i = 0; i < 150 && filesUnder(cacheOfC).length > 1; i++) await new Promise((r) => setTimeout(r, 100));
    expect(filesUnder(cacheOfC)).toEqual([`${tunedDone.model!.sha256}.onnx`]);
    // Said once the sweep is done, a moment after the file went (a CI run under load read the log first).
    for (let i = 0; i < 50 && !c.log().includes('removed local copies of deleted models'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(c.log()).toContain('removed local copies of deleted models');

    // Deployment 2's worker shares the Redis but its own queue (prefixes from the deployment ids),
    // and saw none of deployment 1's jobs.
    const prefixOf = (w: WorkerProc) => logLines(w).find((l) => l.msg === 'worker waiting for jobs')!.queuePrefix as string;
    expect(prefixOf(e)).toMatch(/^qatserve-[0-9a-f]{16}$/);
    expect(prefixOf(d)).toMatch(/^qatserve-[0-9a-f]{16}$/);
    expect(prefixOf(e)).not.toBe(prefixOf(d));
    expect(prefixOf(g)).toBe(prefixOf(d));
    expect(e.output()).not.toContain(job.id);
    expect(e.output()).not.toContain(tuned.id);
    expect(e.proc.exitCode).toBeNull();
  }, 300_000);
  it("an image folder lives on the workers' machines: the API queues a folder it cannot see, the worker trains it or says why not", async () => {
    // The worker's data root: `shapes` (2 classes) and `wide` (40 classes); the API has none.
    const dataRoot = path.join(root, 'worker-h', 'datasets');
    await writeClasses(dataRoot, 'shapes', 2, 10);
    await writeClasses(dataRoot, 'wide', 40, 2);
    // One budget for API and worker, which fits the job with 2 classes and not with 40: only the
    // worker, which has the folder, can tell.
    const mib = (classes: number) => estimateJob(TrainingConfig.parse(config('wide')), classes).memoryBytes / 2 ** 20;
    const budget = Math.ceil(mib(2));
    expect(budget).toBeLessThan(mib(40));
    const limits = { JOB_MEMORY_BUDGET_MB: String(budget) };
    const h = await api('api-h', 2, limits);
    const w = worker('worker-h', 2, 'worker-h', { ...limits, DATA_ROOT: dataRoot });
    const logs = () => w.output().slice(-3000);

    const refused = await postRaw(h, config('../worker-h/datasets/shapes'));
    expect([refused.status, ((await refused.json()) as { error: { code: string } }).error.code]).toEqual([400, 'DATASET_PATH_INVALID']);
    const trained = await post(h, config('shapes'));
    const missing = await post(h, config('nowhere'));
    const wide = await post(h, config('wide'));
    const done = await until(h, trained.id, terminal, 120_000, logs);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.model).not.toBeNull();
    const lost = await until(h, missing.id, terminal, 60_000, logs);
    expect([lost.status, lost.error?.code]).toEqual(['failed', 'DATASET_NOT_FOUND']);
    expect(lost.error?.message).toContain('dataset folder "nowhere" does not exist under the data root (DATA_ROOT) of any live worker (1 asked)');
    const big = await until(h, wide.id, terminal, 60_000, logs);
    expect([big.status, big.error?.code]).toEqual(['failed', 'JOB_TOO_LARGE']);
    expect(big.error?.message).toMatch(
      /can run with the 40 classes of its data set: (training|exporting) .* needs about \d+ MiB; the worker's budget is \d+ MiB/,
    );
  }, 240_000);

  it('a job whose folder only some workers have waits for one of them, one restarting included, instead of failing on the first worker without it', async () => {
    // Worker K has `shapes`; worker L has no datasets at all. Until the thirty-second session the
    // job failed DATASET_NOT_FOUND whenever L happened to take it.
    const dataRoot = path.join(root, 'worker-k', 'datasets');
    await writeClasses(dataRoot, 'shapes', 2, 10);
    const j = await api('api-j', 3);
    const k = worker('worker-k', 3, 'worker-k', { DATA_ROOT: dataRoot });
    await ready(k);
    // K is busy when the folder's job comes, so L, which lacks the folder, is the one to take it.
    const busy = await keepBusy(j, k);
    const l = worker('worker-l', 3, 'worker-l', { DATA_ROOT: path.join(root, 'worker-l', 'datasets'), LOG_LEVEL: 'debug' });
    await ready(l);
    const logs = () => [k, l].map((w) => w.output().slice(-1500)).join('\n---\n');

    const shapes = await post(j, config('shapes'));
    const left = (w: WorkerProc, id: string) => logLines(w).some((x) => x.jobId === id && String(x.msg).includes("is not under this worker's DATA_ROOT"));
    for (let i = 0; i < 600 && !left(l, shapes.id); i++) await new Promise((r) => setTimeout(r, 100));
    expect(left(l, shapes.id), logs()).toBe(true);
    // L leaves it again (a debug line): from the second time on, the job sits out 10 s between offers
    // (before L stood aside around the offer, L, waiting longest, got it back every time and K never did).
    const again = () => logLines(l).some((x) => x.jobId === shapes.id && x.msg === 'job left on the queue again for a worker with its folder');
    for (let i = 0; i < 600 && !again(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(again(), logs()).toBe(true);
    // Left on the queue untouched: never claimed, no attempt counted.
    const waiting = await getJob(j, shapes.id);
    expect([waiting.status, waiting.attempts]).toEqual(['queued', 0]);
    // And it says why it waits.
    const place = (await (await fetch(`${j.base}/v1/jobs/${shapes.id}/queue`)).json()) as { withoutFolder: number; workers: { training: number } };
    expect([place.withoutFolder, place.workers.training]).toEqual([1, 1]);

    // K comes free and takes it; L never started it.
    expect((await fetch(`${j.base}/v1/jobs/${busy.id}/cancel`, { method: 'POST' })).status).toBe(200);
    const done = await until(j, shapes.id, terminal, 120_000, logs);
    expect([done.status, done.attempts], JSON.stringify(done.error)).toEqual(['succeeded', 1]);
    expect(logLines(k).some((x) => x.msg === 'starting job' && x.jobId === shapes.id)).toBe(true);
    expect(logLines(l).some((x) => x.msg === 'starting job' && x.jobId === shapes.id)).toBe(false);

    // K restarts (a graceful stop takes it off the live list at once): a job for its folder that L
    // takes meanwhile waits for K instead of failing (until the thirty-eighth session it failed
    // DATASET_NOT_FOUND on L); the queue place counts K as away.
    k.proc.kill('SIGTERM');
    await k.exited;
    const orphan = await post(j, config('shapes'));
    const leftForAway = () =>
      logLines(l).some((x) => x.jobId === orphan.id && String(x.msg).includes('job left on the queue for the 0 live worker(s) and the 1 away'));
    for (let i = 0; i < 600 && !leftForAway(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(leftForAway(), logs()).toBe(true);
    const away = (await (await fetch(`${j.base}/v1/jobs/${orphan.id}/queue`)).json()) as JobQueuePlace;
    expect([away.status, away.workers.away]).toEqual(['queued', 1]);
    const k2 = worker('worker-k', 3, 'worker-k2', { DATA_ROOT: dataRoot });
    const resumed = await until(j, orphan.id, terminal, 120_000, () => [k2, l].map((w) => w.output().slice(-1500)).join('\n---\n'));
    expect([resumed.status, resumed.attempts], JSON.stringify(resumed.error)).toEqual(['succeeded', 1]);
    expect(logLines(k2).some((x) => x.msg === 'starting job' && x.jobId === orphan.id)).toBe(true);

    // A folder no worker has: K2, on K's machine with K's DATA_ROOT, stands for K, so the job fails
    // once both live workers have said they lack it, without waiting for K.
    const lost = await until(j, (await post(j, config('nowhere'))).id, terminal, 60_000, logs);
    expect([lost.status, lost.error?.code, lost.attempts]).toEqual(['failed', 'DATASET_NOT_FOUND', 0]);
    expect(lost.error?.message).toContain('dataset folder "nowhere" does not exist under the data root (DATA_ROOT) of any live worker (2 asked)');
    expect(l.proc.exitCode).toBeNull();
  }, 240_000);

  it('a job over the memory budget of the worker that takes it waits for a worker with room, one restarting included; counting live workers only, one none can hold is refused at the POST', async () => {
    // Worker S admits a heap of 64 MiB (JOB_MEMORY_BUDGET_MB, as a small machine would hold it);
    // R the default. Until the thirty-sixth session S failed JOB_TOO_LARGE every job it took first.
    const m = await api('api-m', 4);
    const r = worker('worker-r', 4, 'worker-r');
    await ready(r);
    const busy = await keepBusy(m, r);
    const s = worker('worker-s', 4, 'worker-s', { JOB_MEMORY_BUDGET_MB: '64', LOG_LEVEL: 'debug' });
    await ready(s);
    const logs = () => [r, s].map((w) => w.output().slice(-1500)).join('\n---\n');
    // A worker logs that it waits for jobs just before its first beacon goes out: wait for both.
    const budgets = async () =>
      ((await (await fetch(`${m.base}/v1/workers`)).json()) as { workers: Array<{ memoryBudgetBytes?: number }> }).workers.map((w) => w.memoryBudgetBytes);
    let listed = await budgets();
    for (let i = 0; i < 50 && listed.length < 2; i++) {
      await new Promise((res) => setTimeout(res, 100));
      listed = await budgets();
    }
    expect(listed.sort((a, b) => a! - b!)).toEqual([64 * 2 ** 20, expect.any(Number)]);

    const job = await post(m, tinyJob(4, { name: 'needs-room' }));
    const left = () => logLines(s).some((x) => x.jobId === job.id && String(x.msg).includes("is over this worker's memory budget of 64 MiB"));
    for (let i = 0; i < 600 && !left(); i++) await new Promise((res) => setTimeout(res, 100));
    expect(left(), logs()).toBe(true);
    const waiting = await getJob(m, job.id);
    expect([waiting.status, waiting.attempts]).toEqual(['queued', 0]);

    expect((await fetch(`${m.base}/v1/jobs/${busy.id}/cancel`, { method: 'POST' })).status).toBe(200);
    const done = await until(m, job.id, terminal, 120_000, logs);
    expect([done.status, done.attempts], JSON.stringify(done.error)).toEqual(['succeeded', 1]);
    expect(logLines(s).some((x) => x.msg === 'starting job' && x.jobId === job.id)).toBe(false);

    // R restarts (a rolling deploy) while it trains a job S cannot hold: the job goes back to the
    // queue with its checkpoint, and S, which takes it, leaves it for R (away) instead of failing
    // it JOB_TOO_LARGE, as it did until the thirty-eighth session. A new such job is admitted meanwhile.
    const long = await post(m, tinyJob(120, { name: 'restarted', checkpointEverySteps: 20 }));
    await until(m, long.id, (x) => x.status === 'running' && x.progress.step >= 25, 120_000, logs);
    r.proc.kill('SIGTERM');
    await r.exited;
    const stoppedAt = Date.now();
    // S may have left this job for R before (while R was live): a leave after R's stop is the one
    // that counts (its first says "the 0 live worker(s) and the 1 away", a repeat is a debug line).
    const leftForAway = () => logLines(s).some((x) => x.jobId === long.id && Number(x.time) >= stoppedAt && String(x.msg).includes('left on the queue'));
    for (let i = 0; i < 600 && !leftForAway(); i++) await new Promise((res) => setTimeout(res, 100));
    expect(leftForAway(), logs()).toBe(true);
    expect((await getJob(m, long.id)).status).toBe('queued');
    const meanwhile = await post(m, tinyJob(4, { name: 'while-away' }));
    const r2 = worker('worker-r', 4, 'worker-r2');
    const logs2 = () => [r2, s].map((w) => w.output().slice(-1500)).join('\n---\n');
    const resumed = await until(m, long.id, terminal, 180_000, logs2);
    expect([resumed.status, resumed.attempts], JSON.stringify(resumed.error)).toEqual(['succeeded', 2]);
    expect(logLines(r2).some((x) => x.msg === 'resuming job' && x.jobId === long.id && Number(x.resumeStep) >= 20)).toBe(true);
    expect((await until(m, meanwhile.id, terminal, 120_000, logs2)).status).toBe('succeeded');

    // An API that counts only live workers (WORKER_RESTART_GRACE_S=0) refuses such a job once R2
    // is gone, saying why, instead of queueing it for S to fail.
    r2.proc.kill('SIGTERM');
    await r2.exited;
    const strict = await api('api-m0', 4, { WORKER_RESTART_GRACE_S: '0' });
    const refused = await postRaw(strict, tinyJob(4, { name: 'alone' }));
    const body = (await refused.json()) as { error: { code: string; issues: Array<{ message: string }> } };
    expect([refused.status, body.error.code]).toEqual([400, 'JOB_TOO_LARGE']);
    expect(body.error.issues[0].message).toMatch(
      /needs about \d+ MiB; the worker's budget is 64 MiB \(the largest budget of the 1 live worker, each held to its machine's memory\)/,
    );
  }, 240_000);
});
