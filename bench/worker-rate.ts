// Issue 12's acceptance measurement in one run: for each workload, the rate of a job on a dedicated
// worker next to bench/train.ts on the same workload, and PyTorch's QAT (bench/train_pytorch.py).
//
//   npm run build && npx tsx bench/worker-rate.ts                    # the three workloads
//   npx tsx bench/worker-rate.ts --only 1x224x8 --rounds 8 --pytorch-isa native,AVX2
//   npx tsx bench/worker-rate.ts --only 1x224x8 --no-pytorch --cached-images 1600   # later epochs
//   npx tsx bench/worker-rate.ts --only 1x224x8 --no-pytorch --threads 1 --thread-cpu  # no barriers
// Where a side's time goes, by thread: run under `perf record -a -e cpu-clock -F 499 -- env
// NODE_OPTIONS=--perf-basic-prof npx tsx bench/worker-rate.ts ...`, then `perf report --tid <the
// training thread's id, as --thread-cpu prints it> -n --sort sym --percentage relative`.
//
// The service side is the built CLI in an empty directory: `qatserve api` and one `qatserve
// worker` (TRAIN_THREADS unset: every core, as on a dedicated worker), sharing a SQLite file, fs
// artifacts and this machine's Redis. The job is synthetic data with augmentation, the standard
// stride-32 layout and QAT from step 0, with enough images that its steps render their batch for
// the first time (a first epoch, the batch thread's most expensive case; --cached-images: later
// epochs, which only augment).
//
// Job and bench run side by side as two warm processes, and SIGSTOP keeps exactly one of them
// running: each round gives the bench a --segment of seconds, then the job one (the next round the
// other way round), then PyTorch (once per --pytorch-isa) with both stopped. Sides taken one after
// another for minutes each (this bench until the tenth session) differed by -22% to +10% in
// single rounds on these VMs, whose speed drifts 25-45% within minutes; segments of 20-30 s
// alternating give every round both sides within a minute. A side's rate is the steps it finished
// within its segment (bench/train.ts --endless prints each; the job's progress.step, so its
// per-step callbacks count too) times the batch, over the time between two changes of that count,
// from 1.5 s after the resume so the step that was cut off is done. The job's Bull lock is made
// long enough (LOCK_DURATION_MS) that a stopped worker keeps its job.
//
// A dedicated worker runs no API, so `qatserve api` is stopped too once the job is warm, and the
// job's progress.step is read from its row in the service's SQLite file (what GET /v1/jobs/:id
// returns). Until the eighteenth session it was polled through the API every 50 ms: the polls at
// a segment's end fell inside the job's measured time, and the API beside a training job (polls,
// reconciler) used ~0.5 s of CPU per 30 s segment against ~0.2 s with the worker stopped, all
// of it taken from the cores the job trains on and none from the bench's.
// Run nothing else meanwhile.
import { spawn, type ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, waitReady } from './local-service.js';
import { pytorchRate, type TorchRate } from './pytorch-rate.js';
import { threadCpu, threadCpuSince } from './thread-cpu.js';

const { values: opt } = parseArgs({
  options: {
    only: { type: 'string' },
    rounds: { type: 'string', default: '4' },
    /** Seconds each side runs per round (default 30 at 224 px, 20 at 32). */
    segment: { type: 'string' },
    'pytorch-isa': { type: 'string', default: 'native' },
    'pytorch-threads': { type: 'string' },
    'no-pytorch': { type: 'boolean', default: false },
    /** + each segment's CPU seconds per thread of the side that ran. */
    'thread-cpu': { type: 'boolean', default: false },
    /**
     * Later epochs instead of a first one: the job's data set holds this many images (a multiple
     * of the batch and of the classes), rendered during the warm-up, so every measured step
     * augments cached images.
     * Each epoch ends with an evaluation and a checkpoint, as in any job: a few hundred steps per
     * epoch keep those to one or two in the measured segments.
     */
    'cached-images': { type: 'string' },
    /**
     * Training threads of both sides (the worker's TRAIN_THREADS, bench/train.ts --threads); default
     * every core. One thread compares the step's cost without barriers, and leaves a core for the
     * rest of each process.
     */
    threads: { type: 'string' },
  },
});
if (opt.threads !== undefined && !(Number.isInteger(Number(opt.threads)) && Number(opt.threads) >= 1))
  throw new Error(`--threads ${opt.threads}: expected a positive integer`);
const CLI = path.resolve(process.env.QATSERVE_CLI ?? 'dist/cli.js');
const TRAIN_BENCH = new URL('./train.ts', import.meta.url).pathname;
const WORKLOADS: Array<[number, number, number]> = [
  [0.35, 32, 16],
  [1.0, 32, 32],
  [1.0, 224, 8],
];
/** Classes of the job's synthetic data set, and its most images per class (the config's limit). */
const CLASSES = 10;
const MAX_PER_CLASS = 10_000;
/** PyTorch's timed and warm-up steps per mode (as in the README's ratio table). */
const BENCH_STEPS = 30;

interface Service {
  base: string;
  dir: string;
  apiPid: number;
  workerPid: number;
  /** The service's SQLite file, opened here for reading job rows while the API is stopped. */
  db: Database.Database;
  /** Ends both processes and removes the directory; showLog prints the end of their log first. */
  stop(showLog?: boolean): Promise<void>;
}

/** `qatserve api`, then `qatserve worker` once the API (and its migrations) are up. */
async function startService(): Promise<Service> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-worker-rate-'));
  const port = await freePort();
  // LOG_LEVEL warn: at info the API logs every poll, CPU taken from the cores the job trains on.
  // A Bull lock of 30 min: the worker is stopped for a segment and for PyTorch's runs (minutes at 224).
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    QUEUE_PREFIX: `worker-rate-${process.pid}`,
    LOG_LEVEL: 'warn',
    LOCK_DURATION_MS: String(30 * 60_000),
    STALLED_INTERVAL_MS: String(30 * 60_000),
  };
  for (const k of ['DATABASE_URL', 'DATA_DIR', 'ARTIFACTS_DIR', 'DATA_ROOT', 'TRAIN_THREADS']) delete env[k];
  if (opt.threads !== undefined) env.TRAIN_THREADS = opt.threads;
  const log = fs.openSync(path.join(dir, 'service.log'), 'w');
  const procs: ChildProcess[] = [spawn(process.execPath, [CLI, 'api'], { cwd: dir, env, stdio: ['ignore', log, log] })];
  const base = `http://127.0.0.1:${port}`;
  const stop = async (showLog = false) => {
    if (showLog) console.log(`service log (last lines):\n${fs.readFileSync(path.join(dir, 'service.log'), 'utf8').split('\n').slice(-40).join('\n')}`);
    await Promise.all(
      procs.map(async (p) => {
        if (p.exitCode !== null) return;
        const gone = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        await gone;
      }),
    );
    fs.closeSync(log);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  if (!(await waitReady(base, 152))) {
    const tail = fs.readFileSync(path.join(dir, 'service.log'), 'utf8').slice(-2000);
    await stop();
    throw new Error(`qatserve api did not become ready:\n${tail}`);
  }
  procs.push(spawn(process.execPath, [CLI, 'worker'], { cwd: dir, env, stdio: ['ignore', log, log] }));
  // The API has created the file and applied the migrations by the time it answers /readyz.
  const db = new Database(path.join(dir, 'data', 'qatserve.db'), { readonly: true, fileMustExist: true });
  const closeDb = async (showLog?: boolean) => {
    db.close();
    await stop(showLog);
  };
  return { base, dir, apiPid: procs[0].pid!, workerPid: procs[1].pid!, db, stop: closeDb };
}

/** GET a job; a dropped connection is retried (the run lasts many minutes). */
async function getJob(svc: Service, id: string): Promise<JobView> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await (await fetch(`${svc.base}/v1/jobs/${id}`)).json()) as JobView;
    } catch (err) {
      if (attempt >= 5) throw err;
      await sleep(500);
    }
  }
}

interface JobView {
  status: string;
  error: { code: string; message: string } | null;
  progress: { step: number; imagesPerSecond: number | null };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** After a resume, the step cut off by the stop (and the job's write of it) ends before the segment's clock starts. */
const SETTLE_MS = 1500;

/** A side that can be paused and resumed, and counts its finished steps. */
interface Side {
  pid: number;
  steps(): Promise<number>;
}

/**
 * The side's step count the moment it next changes, and when: bench/train.ts's count changes as a
 * step ends, the job's as the worker writes its steps (once a second), so a segment timed between
 * two changes has no reading lag at either end.
 */
async function nextStep(side: Side): Promise<{ steps: number; at: number }> {
  const before = await side.steps();
  for (const t0 = performance.now(); performance.now() - t0 < 60_000;) {
    await sleep(50);
    const steps = await side.steps();
    if (steps !== before) return { steps, at: performance.now() };
  }
  throw new Error(`process ${side.pid} finished no step in 60 s`);
}

/** Steps `side` finishes over about `seconds` of running, as images/s; stops it again after. */
async function segment(side: Side, bs: number, seconds: number, cpu: boolean): Promise<number> {
  process.kill(side.pid, 'SIGCONT');
  await sleep(SETTLE_MS);
  const c0 = cpu ? threadCpu(side.pid) : null;
  const start = await nextStep(side);
  await sleep(seconds * 1000);
  const end = await nextStep(side);
  process.kill(side.pid, 'SIGSTOP');
  const secs = (end.at - start.at) / 1000;
  if (c0) console.log(`  ${side.pid}: ${end.steps - start.steps} steps in ${secs.toFixed(1)}s, ${threadCpuSince(c0, 0.05, side.pid)}`);
  return ((end.steps - start.steps) * bs) / secs;
}

/**
 * The job, trained until `warmSteps`, then its worker and the API stopped: a Side whose steps
 * are progress.step as the worker last wrote it to the job's row.
 */
async function startJob(svc: Service, w: number, size: number, bs: number, warmSteps: number, images: number, epochs: number): Promise<Side & { id: string }> {
  const config = {
    dataset: { type: 'synthetic', classes: CLASSES, samplesPerClass: Math.min(MAX_PER_CLASS, Math.ceil(images / CLASSES)), valPerClass: 1 },
    model: { widthMultiplier: w, inputSize: size, smallInputStem: 'off' },
    training: { epochs, batchSize: bs, learningRate: 0.01 },
    quantization: { delaySteps: 0 },
  };
  const res = await fetch(`${svc.base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(config) });
  if (res.status !== 201) throw new Error(`POST /v1/jobs answered ${res.status}: ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  const ended = (job: Awaited<ReturnType<typeof getJob>>) => new Error(`job ${id} ${job.status}: ${job.error?.code} ${job.error?.message}`);
  for (;;) {
    const job = await getJob(svc, id);
    if (job.status === 'running' && job.progress.step >= warmSteps) break;
    if (job.status !== 'queued' && job.status !== 'running') throw ended(job);
    await sleep(1000);
  }
  process.kill(svc.workerPid, 'SIGSTOP');
  process.kill(svc.apiPid, 'SIGSTOP');
  // The worker commits while this reads (SQLite's WAL): each read sees the last committed write.
  const row = svc.db.prepare<[string], { status: string; step: number }>('SELECT status, step FROM "TrainingJob" WHERE id = ?');
  const steps = async () => {
    const job = row.get(id);
    if (job?.status !== 'running') throw new Error(`job ${id} is ${job?.status ?? 'gone'} (the service log says why)`);
    return job.step;
  };
  return { id, pid: svc.workerPid, steps };
}

/** bench/train.ts --endless for one workload, warm and stopped; bench.kill() ends it. */
async function startBench(w: number, size: number, bs: number, warmup: number): Promise<Side & { threads: number; kill(): void }> {
  const args = ['--import', 'tsx', TRAIN_BENCH, '--endless', '--warmup', String(warmup), '--only', `${w}x${size}x${bs}`];
  if (opt.threads !== undefined) args.push('--threads', opt.threads);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let count = 0;
  let threads = 0;
  let pending = '';
  child.stdout.on('data', (d: Buffer) => {
    const lines = (pending + d.toString()).split('\n');
    pending = lines.pop()!;
    for (const l of lines) {
      if (l.startsWith('step ')) count = Number(l.slice(5));
      else if (l.startsWith('train ')) threads = Number(/threads=(\d+)/.exec(l)?.[1] ?? 0);
      if (l.includes('failed:')) console.log(`bench/train.ts: ${l}`);
    }
  });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`bench/train.ts exited (${code}) before its steps began`))));
  while (count === 0) await Promise.race([sleep(200), exited]);
  exited.catch(() => {});
  child.kill('SIGSTOP');
  return {
    pid: child.pid!,
    threads,
    steps: async () => count,
    kill: () => {
      child.kill('SIGKILL');
    },
  };
}

/** Geometric mean: of per-round ratios, so a round where the machine ran slow weighs no more than one where it ran fast. */
const geomean = (xs: number[]): number => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
const pct = (x: number) => `${((x - 1) * 100).toFixed(1)}%`;

if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
const rounds = Number(opt.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds ${opt.rounds}: expected a positive integer`);
const svc = await startService();
let failed = true;
try {
  for (const [w, size, bs] of WORKLOADS) {
    if (opt.only && opt.only !== `${w}x${size}x${bs}`) continue;
    // A first epoch throughout (one epoch's worth of images, a second epoch keeps it running), or
    // --cached-images: a data set that the warm-up renders once and every measured step reads again.
    const cachedImages = opt['cached-images'] === undefined ? null : Number(opt['cached-images']);
    // Whole batches and whole classes, so the data set holds exactly these images and the warm-up's
    // one epoch renders every one of them.
    if (
      cachedImages !== null &&
      !(
        Number.isInteger(cachedImages) &&
        cachedImages > 0 &&
        cachedImages % bs === 0 &&
        cachedImages % CLASSES === 0 &&
        cachedImages <= CLASSES * MAX_PER_CLASS
      )
    )
      throw new Error(
        `--cached-images ${opt['cached-images']}: expected a multiple of the batch (${bs}) and of the ${CLASSES} classes, at most ${CLASSES * MAX_PER_CLASS}`,
      );
    // Both sides warm past V8's tier-up (tens of steps) before the first segment: the job
    // `warmSteps` steps (and its whole first epoch with --cached-images), bench/train.ts `warmup`
    // steps per mode.
    const warmSteps = Math.max(size >= 224 ? 40 : 200, (cachedImages ?? 0) / bs);
    const warmup = size >= 224 ? 30 : 100;
    const seconds = Number(opt.segment ?? (size >= 224 ? 30 : 20));
    // Images the job needs: warm-up plus every job segment at up to 40 (224 px) or 1,500 img/s.
    const needed = bs * warmSteps + rounds * (seconds + 2) * (size >= 224 ? 40 : 1500);
    const job = cachedImages
      ? await startJob(svc, w, size, bs, warmSteps, cachedImages, Math.ceil(needed / cachedImages) + 1)
      : await startJob(svc, w, size, bs, warmSteps, needed, 2);
    let bench: Awaited<ReturnType<typeof startBench>> | null = null;
    const isas = opt['no-pytorch'] ? [] : opt['pytorch-isa'].split(',');
    const torch = new Map<string, Array<TorchRate | string>>(isas.map((isa) => [isa, []]));
    const jobs: number[] = [];
    const benches: number[] = [];
    try {
      bench = await startBench(w, size, bs, warmup);
      for (let r = 0; r < rounds; r++) {
        // Bench first in even rounds, job first in odd ones.
        for (const which of r % 2 ? ['job', 'bench'] : ['bench', 'job']) {
          if (which === 'job') jobs.push(await segment(job, bs, seconds, opt['thread-cpu']));
          else benches.push(await segment(bench, bs, seconds, opt['thread-cpu']));
        }
        // PyTorch with both of ours stopped, minutes from this round's segments at most.
        for (const isa of isas)
          torch.get(isa)!.push(await pytorchRate(w, size, bs, { steps: BENCH_STEPS, warmup: BENCH_STEPS, threads: opt['pytorch-threads'], isa }));
      }
    } finally {
      bench?.kill();
      // Also when the bench failed to start: a stopped process would never act on the service's SIGTERM.
      process.kill(svc.apiPid, 'SIGCONT');
      process.kill(svc.workerPid, 'SIGCONT');
      await fetch(`${svc.base}/v1/jobs/${job.id}/cancel`, { method: 'POST' });
      // Wait for the worker to let go, so the next workload has the cores to itself.
      for (let i = 0; i < 600; i++) {
        if (['cancelled', 'failed', 'succeeded'].includes((await getJob(svc, job.id)).status)) break;
        await sleep(250);
      }
    }
    let line =
      `worker-rate w=${w} size=${size} bs=${bs} layout=standard threads=${bench.threads} segments=${rounds}x${seconds}s ` +
      `${cachedImages ? `data=${cachedImages} cached images` : 'data=first epoch'}: ` +
      `job ${jobs.map((v) => v.toFixed(1)).join(' / ')} img/s, bench/train.ts ${benches.map((v) => v.toFixed(1)).join(' / ')} | ` +
      `job vs bench ${pct(geomean(jobs.map((j, i) => j / benches[i])))} (geometric mean over rounds; per round ${jobs.map((j, i) => pct(j / benches[i])).join(', ')})`;
    for (const [isa, runs] of torch) {
      const tag = isa === 'native' ? 'pytorch' : `pytorch isa=${isa}`;
      const failure = runs.find((t): t is string => typeof t === 'string');
      if (failure !== undefined) {
        line += ` | ${tag}: ${failure}`;
        continue;
      }
      const ok = runs as TorchRate[];
      const ratios = ok.map((t, i) => jobs[i] / t.qat);
      line +=
        ` | ${tag} threads=${ok[0].threads}: qat ${ok.map((t) => t.qat.toFixed(1)).join(' / ')} img/s, float ${ok.map((t) => t.float.toFixed(1)).join(' / ')}` +
        ` | job/pytorch ${geomean(ratios).toFixed(2)}x (geometric mean over rounds; per round ${ratios.map((x) => `${x.toFixed(2)}x`).join(', ')})`;
    }
    console.log(line);
  }
  failed = false;
} finally {
  await svc.stop(failed);
}
