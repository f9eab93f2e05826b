// An idle `qatserve api` sleeps. Its probes of event-loop lag (load shedding, /metrics) once woke it
// every 10 ms, 100 times a second for as long as it ran; on a machine where a worker trains on
// every core, each wakeup preempted a training thread (README, issue 12). Counted from /proc: the
// voluntary context switches of all the process's threads, a count that does not depend on speed.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { threadCpu } from '../../bench/thread-cpu.js';
import { apiEnv, startApi, type ApiProcess } from './api-process.js';

/** Times the process's threads went to sleep so far (each sleep ends in a wakeup). */
const sleeps = (pid: number): number => threadCpu(pid).reduce((n, t) => n + t.slept, 0);

describe.runIf(fs.existsSync('/proc/self/task'))('an idle API', () => {
  let api: ApiProcess;
  beforeAll(async () => {
    api = await startApi(apiEnv('idle', { LOG_LEVEL: 'warn' }));
  });
  afterAll(async () => {
    await api?.stop();
  });

  it('wakes up fewer than 40 times a second', async () => {
    await new Promise((r) => setTimeout(r, 2000)); // start-up's own work (migrations, first refresh) is over
    const before = sleeps(api.pid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 5000));
    const perSecond = (sleeps(api.pid) - before) / ((performance.now() - t0) / 1000);
    expect(perSecond).toBeLessThan(40);
  });

  it("reports no event-loop lag on /metrics: the coarser probe's period is not counted as lag", async () => {
    const lag = async (stat: string) => {
      const text = await (await fetch(`${api.base}/metrics`)).text();
      return Number(new RegExp(`^qatserve_nodejs_eventloop_lag_${stat}_seconds (\\S+)$`, 'm').exec(text)![1]);
    };
    await lag('p99'); // a scrape resets the samples: start-up's work is not in the next one
    await new Promise((r) => setTimeout(r, 1500));
    expect(await lag('p99')).toBeLessThan(0.05);
  });
});
