// One job through `qatserve serve` as a user runs it: the built CLI in an empty directory (SQLite,
// fs artifacts, one worker child), a config POSTed to /v1/jobs, polled to its end. Prints the
// outcome, the int8 top-1, the seconds from the POST, the worker's peak RSS (VmHWM of the worker
// process, read from /proc), and the answer of /v1/predict to one image.
//
//   npm run build && npx tsx bench/serve-job.ts '<job config JSON>' [--timeout-min 60] [--keep] [--data-root DIR]
//
// Run heavy configs under `flock -x /tmp/cpu.lock` on a shared machine. Exits 1 unless the job
// succeeded and its model served /v1/predict (or with --expect-failure CODE, unless it failed so).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, waitReady } from './local-service.js';
import sharp from 'sharp';
import { phaseLine, type Phase } from '../src/ml/train-api.js';

// QATSERVE_CLI: a snapshot of dist/ (e.g. dist-bench/cli.js beside it), so a rebuild during a long run changes nothing.
const CLI = path.resolve(process.env.QATSERVE_CLI ?? 'dist/cli.js');

/** Peak resident set of a process in bytes (Linux VmHWM), or null once it is gone. */
function peakRss(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function workerPidOf(servePid: number): number | null {
  try {
    return Number(
      execFileSync('pgrep', ['-P', String(servePid), '-f', 'cli.js worker'], { encoding: 'utf8' })
        .trim()
        .split('\n')[0],
    );
  } catch {
    return null;
  }
}

interface Job {
  status: string;
  error: { code: string; message: string } | null;
  warnings: number;
  progress: { step: number; totalSteps: number | null; phase: Phase | null };
  model: { id: string; int8Top1: number | null; floatTop1: number | null } | null;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'timeout-min': { type: 'string', default: '90' },
      keep: { type: 'boolean', default: false },
      'expect-failure': { type: 'string' },
      'data-root': { type: 'string' },
    },
  });
  if (positionals.length !== 1)
    throw new Error("usage: npx tsx bench/serve-job.ts '<job config JSON>' [--timeout-min N] [--keep] [--expect-failure CODE] [--data-root DIR]");
  const config = JSON.parse(positionals[0]) as unknown;
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);

  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-bench-job-'));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', QUEUE_PREFIX: `bench-job-${process.pid}` };
  for (const k of ['DATABASE_URL', 'DATA_DIR', 'ARTIFACTS_DIR', 'DATA_ROOT']) delete env[k];
  // An image-folder job reads its folder under DATA_ROOT, which otherwise is the empty ./data/datasets.
  if (values['data-root']) env.DATA_ROOT = path.resolve(values['data-root']);
  const logFile = path.join(cwd, 'serve.log');
  const fd = fs.openSync(logFile, 'w');
  const proc = spawn(process.execPath, [CLI, 'serve'], { cwd, env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const base = `http://127.0.0.1:${port}`;
  let ok = false;
  try {
    await waitReady(base);
    const posted = Date.now();
    const res = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(config) });
    if (res.status !== 201) throw new Error(`POST /v1/jobs answered ${res.status}: ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    console.log(`job ${id} posted; serve log: ${logFile}`);

    let job: Job | null = null;
    let workerPid: number | null = null;
    let peak = 0;
    let lastReport = 0;
    let lastTask: string | null = null;
    const until = posted + Number(values['timeout-min']) * 60_000;
    while (Date.now() < until) {
      workerPid ??= workerPidOf(proc.pid!);
      if (workerPid) peak = Math.max(peak, peakRss(workerPid) ?? 0);
      job = (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as Job;
      if (['succeeded', 'failed', 'cancelled'].includes(job.status)) break;
      // Every 30 s, and as an evaluation or the export moves to its next task.
      const { phase } = job.progress;
      const task = phase && `${phase.name}: ${phase.task}`;
      if (Date.now() - lastReport > 30_000 || task !== lastTask) {
        lastReport = Date.now();
        lastTask = task;
        const doing = phase ? `, ${phaseLine(phase, true)}` : '';
        console.log(
          `  ${((Date.now() - posted) / 1000).toFixed(1)} s: ${job.status} step ${job.progress.step}/${job.progress.totalSteps ?? '?'}${doing}, worker peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    const seconds = (Date.now() - posted) / 1000;
    if (workerPid) peak = Math.max(peak, peakRss(workerPid) ?? 0);
    const pct = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${(v * 100).toFixed(1)}%`);
    console.log(`status ${job?.status}${job?.error ? ` ${job.error.code}: ${job.error.message}` : ''}`);
    console.log(`int8 top-1 ${pct(job?.model?.int8Top1)}, float top-1 ${pct(job?.model?.floatTop1)}, warnings ${job?.warnings ?? '-'}`);
    console.log(`seconds from POST ${seconds.toFixed(1)}; worker peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB`);

    if (values['expect-failure']) {
      ok = job?.status === 'failed' && job.error?.code === values['expect-failure'];
    } else if (job?.status === 'succeeded') {
      const jpeg = await sharp({ create: { width: 300, height: 200, channels: 3, background: { r: 30, g: 160, b: 90 } } })
        .jpeg()
        .toBuffer();
      const pred = await fetch(`${base}/v1/predict?topK=2`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(jpeg) });
      const body = await pred.text();
      console.log(`/v1/predict ${pred.status} ${body.slice(0, 300)}`);
      ok = pred.status === 200;
    }
  } finally {
    if (!ok) console.log(`serve log (last lines):\n${fs.readFileSync(logFile, 'utf8').split('\n').slice(-25).join('\n')}`);
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    if (!values.keep) fs.rmSync(cwd, { recursive: true, force: true });
  }
  process.exitCode = ok ? 0 : 1;
}

await main();
