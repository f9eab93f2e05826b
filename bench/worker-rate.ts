// Issue 12's acceptance measurement in one run: for each workload, the training rate a job reports
// (progress.imagesPerSecond from GET /v1/jobs/:id) on a dedicated worker, next to bench/train.ts
// on the same workload and PyTorch's QAT (bench/train_pytorch.py).
//
//   npm run build && npx tsx bench/worker-rate.ts                    # the three workloads
//   npx tsx bench/worker-rate.ts --only 1x224x8 --rounds 2 --pytorch-isa native,AVX2
//
// The service side is the built CLI in an empty directory: `qatserve api` and one `qatserve
// worker` (TRAIN_THREADS unset: every core, as on a dedicated worker), sharing a SQLite file, fs
// artifacts and this machine's Redis. Each job is synthetic data with augmentation, the standard
// stride-32 layout, QAT from step 0, and enough images that every step renders its batch for the
// first time (a first epoch, the batch thread's most expensive case). The job is read at step
// --steps (the rate is over the last STEP_RATE_WINDOW steps) and then cancelled, so no export runs.
//
// Each round runs bench/train.ts, the job and PyTorch (once per --pytorch-isa) one after another,
// each round starting one side later, so a machine whose speed drifts (±20% within minutes on
// these VMs) hits every side alike; the line gives each round's figures and the geometric means of
// the per-round ratios. Nothing runs beside anything else. Run nothing else meanwhile.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from './free-port.js';
import { pytorchRate, type TorchRate } from './pytorch-rate.js';
import { median } from './stats.js';
import { threadCpu, threadCpuSince, type ThreadCpu } from './thread-cpu.js';

const { values: opt } = parseArgs({
  options: {
    only: { type: 'string' },
    rounds: { type: 'string', default: '1' },
    /** Steps before the job's rate is read: past V8's tier-up (tens of steps) at every size. */
    steps: { type: 'string' },
    'pytorch-isa': { type: 'string', default: 'native' },
    'pytorch-threads': { type: 'string' },
    'no-pytorch': { type: 'boolean', default: false },
    /** + CPU seconds per thread of the worker and the API process over the job's second half. */
    'thread-cpu': { type: 'boolean', default: false },
  },
});
const CLI = path.resolve(process.env.QATSERVE_CLI ?? 'dist/cli.js');
const TRAIN_BENCH = new URL('./train.ts', import.meta.url).pathname;
const WORKLOADS: Array<[number, number, number]> = [
  [0.35, 32, 16],
  [1.0, 32, 32],
  [1.0, 224, 8],
];
/** bench/train.ts's timed steps per mode, and PyTorch's timed and warm-up steps (as in the README's ratio table). */
const BENCH_STEPS = 30;

interface Service {
  base: string;
  dir: string;
  apiPid: number;
  workerPid: number;
  /** Ends both processes and removes the directory; showLog prints the end of their log first. */
  stop(showLog?: boolean): Promise<void>;
}

/** `qatserve api`, then `qatserve worker` once the API (and its migrations) are up. */
async function startService(): Promise<Service> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-worker-rate-'));
  const port = await freePort();
  // LOG_LEVEL warn: at info the API logs every poll, CPU taken from the cores the job trains on.
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', QUEUE_PREFIX: `worker-rate-${process.pid}`, LOG_LEVEL: 'warn' };
  for (const k of ['DATABASE_URL', 'DATA_DIR', 'ARTIFACTS_DIR', 'DATA_ROOT', 'TRAIN_THREADS']) delete env[k];
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
  for (let i = 0; ; i++) {
    if (
      await fetch(`${base}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 150) {
      const tail = fs.readFileSync(path.join(dir, 'service.log'), 'utf8').slice(-2000);
      await stop();
      throw new Error(`qatserve api did not become ready:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  procs.push(spawn(process.execPath, [CLI, 'worker'], { cwd: dir, env, stdio: ['ignore', log, log] }));
  return { base, dir, apiPid: procs[0].pid!, workerPid: procs[1].pid!, stop };
}

/** GET a job; a dropped connection is retried (the poll runs for minutes). */
async function getJob(svc: Service, id: string): Promise<JobView> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await (await fetch(`${svc.base}/v1/jobs/${id}`)).json()) as JobView;
    } catch (err) {
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

interface JobView {
  status: string;
  error: { code: string; message: string } | null;
  progress: { step: number; imagesPerSecond: number | null };
}

/** What a job reported over its second half: the median and the last of its progress.imagesPerSecond. */
interface JobRate {
  median: number;
  last: number;
}

/** A job's progress.imagesPerSecond until it has trained `steps` steps; the job is then cancelled. */
async function jobRate(svc: Service, w: number, size: number, bs: number, steps: number): Promise<JobRate> {
  const classes = 10;
  // Room past `steps`, so the job is still training when its progress is read: the poll runs once
  // a second (each GET costs the API a few ms of CPU, from the cores that train) and may land up
  // to ~40 steps late at 32 px.
  const maxSteps = steps + (size >= 224 ? 10 : 100);
  const config = {
    dataset: { type: 'synthetic', classes, samplesPerClass: Math.ceil((bs * maxSteps) / classes), valPerClass: 1 },
    model: { widthMultiplier: w, inputSize: size, smallInputStem: 'off' },
    training: { epochs: 1, batchSize: bs, maxSteps, learningRate: 0.01 },
    quantization: { delaySteps: 0 },
  };
  const res = await fetch(`${svc.base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(config) });
  if (res.status !== 201) throw new Error(`POST /v1/jobs answered ${res.status}: ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  let before: { worker: ThreadCpu[]; api: ThreadCpu[]; at: number; step: number } | null = null;
  // One reading per step polled (a poll that finds the same step adds nothing).
  const readings = new Map<number, number>();
  try {
    for (;;) {
      const job = await getJob(svc, id);
      if (job.status === 'failed' || job.status === 'cancelled') throw new Error(`job ${id} ${job.status}: ${job.error?.code} ${job.error?.message}`);
      // From half way: at one poll a second the reported window itself may fall between two polls.
      if (opt['thread-cpu'] && !before && job.progress.step >= steps / 2)
        before = { worker: threadCpu(svc.workerPid), api: threadCpu(svc.apiPid), at: performance.now(), step: job.progress.step };
      if (job.progress.step >= steps / 2 && job.progress.imagesPerSecond !== null) readings.set(job.progress.step, job.progress.imagesPerSecond);
      if (job.progress.step >= steps && job.progress.imagesPerSecond !== null) {
        if (before) {
          const secs = ((performance.now() - before.at) / 1000).toFixed(2);
          console.log(
            `  steps ${before.step}-${job.progress.step}, ${secs}s wall: worker ${threadCpuSince(before.worker, 0.05, svc.workerPid)}; api ${threadCpuSince(before.api, 0.05, svc.apiPid)}`,
          );
        }
        return { median: median([...readings.values()]), last: job.progress.imagesPerSecond };
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await fetch(`${svc.base}/v1/jobs/${id}/cancel`, { method: 'POST' });
    // Wait for the worker to let go, so the next measurement has the cores to itself.
    for (let i = 0; i < 600; i++) {
      const job = await getJob(svc, id);
      if (['cancelled', 'failed', 'succeeded'].includes(job.status)) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * bench/train.ts's QAT img/s (wall) and thread count for one workload, in a process of its own.
 * Asynchronous: a blocked event loop would miss the API closing idle keep-alive sockets, and the
 * next request would go out on a dead one.
 */
async function benchRate(w: number, size: number, bs: number, warmup: number): Promise<{ qat: number; threads: number }> {
  const args = ['--import', 'tsx', TRAIN_BENCH, '--steps', String(BENCH_STEPS), '--warmup', String(warmup), '--only', `${w}x${size}x${bs}`];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise((r) => child.once('close', r));
  const line = out.split('\n').find((l) => l.startsWith('train '));
  const qat = line && /qat ([\d.]+) img\/s/.exec(line);
  const threads = line && /threads=(\d+)/.exec(line);
  if (!qat || !threads) throw new Error(`bench/train.ts printed no rate:\n${out}\n${err}`);
  return { qat: Number(qat[1]), threads: Number(threads[1]) };
}

/** Geometric mean: of per-round ratios, so a round where the machine ran slow weighs no more than one where it ran fast. */
const geomean = (xs: number[]): number => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
const rounds = Number(opt.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds ${opt.rounds}: expected a positive integer`);
const svc = await startService();
let failed = true;
try {
  for (const [w, size, bs] of WORKLOADS) {
    if (opt.only && opt.only !== `${w}x${size}x${bs}`) continue;
    // The job is read at step 101 (224 px, ~0.5 s a step) or 201 (32 px, 25-120 ms a step), and
    // bench/train.ts gets 100 warm-up steps per mode at 32 px (30 at 224), so both sides are timed
    // after a comparable number of steps rather than a job that has run 200 against a bench of 60.
    const steps = Number(opt.steps ?? (size >= 224 ? 101 : 201));
    const warmup = size >= 224 ? 30 : 100;
    const jobs: number[] = [];
    const lasts: number[] = [];
    const benches: number[] = [];
    let threads = 0;
    // PyTorch runs inside every round, so each round's job/PyTorch ratio is taken minutes apart at
    // most: run once after all rounds, a drift of the machine between the two sides showed as a
    // 1.36x ratio in one run and 1.68x in the next (issue 12, eighth session).
    const isas = opt['no-pytorch'] ? [] : opt['pytorch-isa'].split(',');
    const torch = new Map<string, Array<TorchRate | string>>(isas.map((isa) => [isa, []]));
    const sides = ['bench', 'job', ...isas.map((isa) => `pytorch:${isa}`)];
    for (let r = 0; r < rounds; r++) {
      // Each round starts one side later, so no side always runs first or right after another.
      for (const which of sides.map((_, k) => sides[(k + r) % sides.length])) {
        if (which === 'job') {
          const j = await jobRate(svc, w, size, bs, steps);
          jobs.push(j.median);
          lasts.push(j.last);
        } else if (which === 'bench') {
          const b = await benchRate(w, size, bs, warmup);
          benches.push(b.qat);
          threads = b.threads;
        } else {
          const isa = which.slice('pytorch:'.length);
          torch.get(isa)!.push(await pytorchRate(w, size, bs, { steps: BENCH_STEPS, warmup: BENCH_STEPS, threads: opt['pytorch-threads'], isa }));
        }
      }
    }
    const vsBench = geomean(jobs.map((j, i) => j / benches[i]));
    let line =
      `worker-rate w=${w} size=${size} bs=${bs} layout=standard threads=${threads} job-steps=${steps}: ` +
      `job ${jobs.map((v) => v.toFixed(1)).join(' / ')} img/s (median over steps ${Math.ceil(steps / 2)}-${steps}; last ${lasts.map((v) => v.toFixed(1)).join(' / ')}), ` +
      `bench/train.ts (warm-up ${warmup}) ${benches.map((v) => v.toFixed(1)).join(' / ')} | ` +
      `job vs bench ${((vsBench - 1) * 100).toFixed(1)}% (geometric mean over rounds; per round ${jobs.map((j, i) => `${((j / benches[i] - 1) * 100).toFixed(1)}%`).join(', ')})`;
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
