// serve's worker supervisor with real child processes: restarts back off exponentially up to a
// cap, a healthy run resets the backoff, and /readyz and /metrics report it.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { buildApp } from '../../src/api/app.js';
import { restartDelayMs, WorkerSupervisor, type WorkerStatus } from '../../src/queue/worker-supervisor.js';
import { startHarness, waitReady, type Harness } from '../api/api-harness.js';

const quiet = silentLogger;
const until = async (pred: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('worker restart backoff', () => {
  it('doubles from the base delay and stops at the cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 50].map((n) => restartDelayMs(n) / 1000)).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60]);
  });

  it('restarts a crashing worker later and later, up to the cap; a healthy run starts over', async () => {
    const starts: Array<{ at: number; mode: 'crash' | 'live'; backoffMs: number }> = [];
    let mode: 'crash' | 'live' = 'crash';
    const sup: WorkerSupervisor = new WorkerSupervisor(
      () => {
        starts.push({ at: Date.now(), mode, backoffMs: sup.status().backoffMs });
        return spawn(process.execPath, ['-e', mode === 'crash' ? 'process.exit(3)' : 'setTimeout(() => process.exit(4), 400)']);
      },
      { baseMs: 100, maxMs: 400, healthyAfterMs: 300 },
      quiet,
    );
    try {
      sup.start();
      await until(() => starts.length >= 5);
      expect(sup.status()).toMatchObject({ lastExit: 'exit code 3' });
      expect(sup.status().restarts).toBeGreaterThanOrEqual(4);
      // Each restart waited its backoff: 100, 200, 400, then capped at 400 ms.
      expect(starts.slice(1, 5).map((s) => s.backoffMs)).toEqual([100, 200, 400, 400]);
      for (let i = 1; i < 5; i++) expect(starts[i].at - starts[i - 1].at).toBeGreaterThanOrEqual(starts[i].backoffMs);

      // It recovers: a worker that runs past `healthyAfterMs` before it exits is followed by the base delay again.
      mode = 'live';
      await until(() => sup.status().lastExit === 'exit code 4');
      expect(sup.status()).toMatchObject({ consecutiveCrashes: 1, backoffMs: 100 });
    } finally {
      await sup.stop();
    }
    expect(sup.status().state).toBe('stopped');
  });
});

describe('worker state in /readyz and /metrics', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness('sqlite');
    await waitReady(h);
  });
  afterAll(async () => h?.close());

  it('says the worker is restarting, with its crashes and backoff, and ready again once it runs', async () => {
    let status: WorkerStatus = {
      state: 'restarting',
      restarts: 3,
      consecutiveCrashes: 3,
      lastExit: 'signal SIGKILL',
      backoffMs: 4000,
      nextStartAt: new Date(Date.now() + 4000),
    };
    const app = await buildApp({ ...h.deps, logger: false, workerStatus: () => status });
    try {
      const down = await app.inject({ method: 'GET', url: '/readyz' });
      expect(down.statusCode).toBe(503);
      expect(down.json().checks).toMatchObject({ database: 'ok', redis: 'ok', queue: 'ok' });
      expect(down.json().checks.worker).toMatch(/^error: crashed \(signal SIGKILL, 3 in a row, 3 restarts\); restarting in [34] s$/);
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(metrics).toContain('qatserve_worker_up 0');
      expect(metrics).toContain('qatserve_worker_restarts_total 3');
      // Prometheus's naming rule (promtool check metrics): _total names a counter, and only a
      // counter. prom-client's own nodejs_active_*_total gauges break it upstream.
      const types = [...metrics.matchAll(/^# TYPE (qatserve_\S+) (\w+)$/gm)].filter(([, name]) => !name.startsWith('qatserve_nodejs_active_'));
      expect(types.length).toBeGreaterThan(20);
      expect(types.filter(([, name, type]) => name.endsWith('_total') !== (type === 'counter')).map(([line]) => line)).toEqual([]);
      expect(metrics).toContain('qatserve_worker_restart_backoff_seconds 4');

      status = { ...status, state: 'running', nextStartAt: null };
      const up = await app.inject({ method: 'GET', url: '/readyz' });
      expect(up.statusCode).toBe(200);
      expect(up.json().checks.worker).toBe('ok');
      expect((await app.inject({ method: 'GET', url: '/metrics' })).body).toContain('qatserve_worker_up 1');
    } finally {
      await app.close();
    }
  });
});
