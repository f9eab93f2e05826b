// The API's load shedding: once the event loop has lagged past
// MAX_EVENT_LOOP_DELAY_MS, requests get 503 OVERLOADED with Retry-After before any work is done for
// them, /healthz still answers, and the server recovers when the lag is gone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lagProbeResolutionMs, meanLagMs } from '../../src/api/plugins/load-shedding.js';
import { startHarness, type Harness } from './api-harness.js';

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

describe('the lag probe', () => {
  it('samples a quarter of the threshold, at most four times a second and at most every 10 ms', () => {
    expect(lagProbeResolutionMs(1000)).toBe(250);
    expect(lagProbeResolutionMs(100)).toBe(25);
    expect(lagProbeResolutionMs(5000)).toBe(250);
    expect(lagProbeResolutionMs(1)).toBe(10);
  });

  it('counts what exceeds the probe period as lag, and a second without samples as none', () => {
    expect(meanLagMs({ count: 4, meanNs: 250e6 }, 250)).toBe(0);
    expect(meanLagMs({ count: 2, meanNs: 1500e6 }, 250)).toBe(1250);
    expect(meanLagMs({ count: 3, meanNs: 249e6 }, 250)).toBe(0);
    expect(meanLagMs({ count: 0, meanNs: NaN }, 250)).toBe(0);
  });
});

describe('load shedding', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness('sqlite', { MAX_EVENT_LOOP_DELAY_MS: '100' });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('answers 503 OVERLOADED + Retry-After while the event loop lags, keeps /healthz, and recovers', async () => {
    expect((await h.app.inject({ method: 'GET', url: '/v1/jobs' })).statusCode).toBe(200);
    // 1.5 s of a loop that gets a turn only every 250 ms (what a flood of synchronous work does).
    const until = performance.now() + 1500;
    while (performance.now() < until) {
      busy(250);
      await new Promise((r) => setImmediate(r));
    }
    let shed = null;
    for (let i = 0; i < 40 && !shed; i++) {
      const r = await h.app.inject({ method: 'GET', url: '/v1/jobs' });
      if (r.statusCode === 503) shed = r;
      else await new Promise((r) => setTimeout(r, 50));
    }
    if (!shed) throw new Error('no request was shed');
    expect(shed.json().error.code).toBe('OVERLOADED');
    expect(shed.headers['retry-after']).toBe('1');
    expect((await h.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    // The next samples see an idle loop again.
    let ok = false;
    for (let i = 0; i < 60 && !ok; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ok = (await h.app.inject({ method: 'GET', url: '/v1/jobs' })).statusCode === 200;
    }
    expect(ok).toBe(true);
  });
});
