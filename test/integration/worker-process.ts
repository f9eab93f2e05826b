// Worker processes for integration tests: the built CLI (`node dist/cli.js worker`, so run
// `npm run build` first; `npm test` does), with settings shared with the in-process API.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { JobView } from '../../src/jobs/job-view.js';

export const CLI = path.resolve('dist/cli.js');

/**
 * The TypeScript sources under srcDir whose compiled file under distDir is missing or older than
 * the source (a test would otherwise run yesterday's code without saying so).
 */
export function staleBuildFiles(srcDir: string, distDir: string): string[] {
  const stale: string[] = [];
  for (const rel of fs.readdirSync(srcDir, { recursive: true, encoding: 'utf8' })) {
    if (!rel.endsWith('.ts') || rel.endsWith('.d.ts')) continue;
    const built = path.join(distDir, rel.replace(/\.ts$/, '.js'));
    const builtAt = fs.statSync(built, { throwIfNoEntry: false })?.mtimeMs;
    if (builtAt === undefined || builtAt < fs.statSync(path.join(srcDir, rel)).mtimeMs) stale.push(rel);
  }
  return stale.sort();
}

export function assertBuilt(): void {
  if (!fs.existsSync(CLI)) throw new Error('dist/ is missing: run `npm run build` before the integration tests');
  const stale = staleBuildFiles(path.resolve('src'), path.resolve('dist'));
  if (stale.length > 0) {
    const some = stale.slice(0, 5).join(', ') + (stale.length > 5 ? ` and ${stale.length - 5} more` : '');
    throw new Error(`dist/ is older than src/ (${some}): run \`npm run build\` before the integration tests`);
  }
}

/** Short locks so a killed worker's job is re-queued within seconds (steps run in a thread). */
export const FAST_QUEUE_ENV = { LOCK_DURATION_MS: '4000', STALLED_INTERVAL_MS: '1000' };

export interface WorkerProc {
  proc: ChildProcess;
  log: string;
  exited: Promise<number | null>;
  output(): string;
}

/** `prefix`: a command the worker runs under (it must `exec` the rest, so the pid is the worker's). */
export function spawnWorker(env: Record<string, string>, label: string, prefix: string[] = []): WorkerProc {
  const log = path.join(env.DATA_DIR, `worker-${label}.log`);
  const fd = fs.openSync(log, 'w');
  const [command, ...args] = [...prefix, process.execPath, CLI, 'worker'];
  const proc = spawn(command, args, {
    env: { ...process.env, ...FAST_QUEUE_ENV, LOG_LEVEL: 'info', QATSERVE_SKIP_MIGRATE: '1', ...env },
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, log, exited, output: () => fs.readFileSync(log, 'utf8') };
}

/** Kills a worker at once (SIGKILL: nothing of its own stop to wait for) and waits for it to exit. */
export async function killWorker(w: WorkerProc): Promise<void> {
  w.proc.kill('SIGKILL');
  await w.exited;
}

export async function getJob(app: FastifyInstance, id: string): Promise<JobView> {
  const res = await app.inject({ method: 'GET', url: `/v1/jobs/${id}` });
  return JobView.parse(res.json());
}

/** Polls the job until `pred` holds; fails with the job and the worker logs on timeout. */
export async function waitForJob(
  app: FastifyInstance,
  id: string,
  pred: (j: JobView) => boolean | Promise<boolean>,
  timeoutMs: number,
  workers: WorkerProc[] = [],
): Promise<JobView> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJob(app, id);
    if (await pred(job)) return job;
    if (Date.now() > until) {
      const logs = workers.map((w) => w.output().split('\n').slice(-15).join('\n')).join('\n---\n');
      throw new Error(`timed out waiting; job is ${JSON.stringify({ status: job.status, progress: job.progress, error: job.error })}\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A synthetic job small enough for 2 shared cores: `steps` optimizer steps of batch 4. */
export function tinyJob(steps: number, extra: { checkpointEverySteps?: number; name?: string } = {}) {
  // 2 classes x 8 images = 16 train images = 4 steps per epoch at batch 4.
  const epochs = Math.ceil(steps / 4);
  return {
    name: extra.name ?? 'tiny',
    dataset: { type: 'synthetic', classes: 2, samplesPerClass: 8, valPerClass: 2, seed: 3 },
    model: { widthMultiplier: 0.35, inputSize: 32 },
    training: { epochs, batchSize: 4, maxSteps: steps, checkpointEverySteps: extra.checkpointEverySteps ?? null },
  };
}
