// What job event streams cost the API: N streams (GET /v1/jobs/:id/events) follow one queued job
// on the built `qatserve api` (SQLite, this machine's Redis), and a write's wake-up is published
// once a second, as a training job's step writes do. Prints the API process's CPU per second of
// wall time over the window (/proc/<pid>/stat), the one figure to compare.
//
//   npm run build && npx tsx bench/event-streams.ts [--streams 200] [--seconds 20]
//
// QATSERVE_CLI: another build's cli.js (a copy of dist/ inside this repository) for before/after.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, waitReady } from './local-service.js';

const { values } = parseArgs({ options: { streams: { type: 'string', default: '200' }, seconds: { type: 'string', default: '20' } } });
const STREAMS = Number(values.streams);
const SECONDS = Number(values.seconds);
const CLI = path.resolve(process.env.QATSERVE_CLI ?? 'dist/cli.js');

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}
const clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-bench-sse-'));
const port = await freePort();
const prefix = `bench-sse-${process.pid}`;
const env: NodeJS.ProcessEnv = {
  ...process.env,
  PORT: String(port),
  HOST: '127.0.0.1',
  QUEUE_PREFIX: prefix,
  SSE_MAX_STREAMS: '0',
  SSE_MAX_STREAMS_PER_CLIENT: '0',
};
for (const k of ['DATABASE_URL', 'DATA_DIR', 'ARTIFACTS_DIR', 'DATA_ROOT']) delete env[k];
execFileSync(process.execPath, [CLI, 'migrate'], { cwd, env, stdio: 'ignore' });
const api = spawn(process.execPath, [CLI, 'api'], { cwd, env, stdio: 'ignore' });
const base = `http://127.0.0.1:${port}`;
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const ctl = new AbortController();
try {
  await waitReady(base);
  const res = await fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ dataset: { type: 'synthetic', classes: 2, samplesPerClass: 8 }, training: { epochs: 1 } }),
  });
  if (res.status !== 201) throw new Error(`POST /v1/jobs answered ${res.status}`);
  const { id } = (await res.json()) as { id: string };
  let received = 0;
  await Promise.all(
    Array.from({ length: STREAMS }, async () => {
      const r = await fetch(`${base}/v1/jobs/${id}/events`, { signal: ctl.signal });
      if (r.status !== 200) throw new Error(`a stream answered ${r.status}`);
      const reader = r.body!.getReader();
      void (async () => {
        for (;;) {
          const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
          if (done) return;
          received += value?.length ?? 0;
        }
      })();
    }),
  );
  await new Promise((r) => setTimeout(r, 3000));
  const cpu0 = cpuSeconds(api.pid!);
  const t0 = performance.now();
  for (let s = 0; s < SECONDS; s++) {
    await redis.publish(`${prefix}:jobs:events`, id);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const perSecond = ((cpuSeconds(api.pid!) - cpu0) / ((performance.now() - t0) / 1000)) * 1000;
  console.log(
    `${STREAMS} streams on one job, one wake-up a second for ${SECONDS} s (${CLI}): API CPU ${perSecond.toFixed(1)} ms per second (${received} bytes streamed)`,
  );
} finally {
  ctl.abort();
  redis.disconnect();
  api.kill('SIGTERM');
  await new Promise((r) => api.once('exit', r));
  fs.rmSync(cwd, { recursive: true, force: true });
}
