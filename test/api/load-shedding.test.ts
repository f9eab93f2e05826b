// The API's load shedding: while the event loop keeps lagging past MAX_EVENT_LOOP_DELAY_MS,
// requests get 503 OVERLOADED with Retry-After before any work is done for them, /healthz still
// answers, and the server recovers when the lag is gone; one pause that is over sheds nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lagProbeResolutionMs, overloaded } from '../../src/api/plugins/load-shedding.js';
import { lagBeyondPeriodMs } from '../../src/api/event-loop-lag.js';
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

  it('reads lag as how late a tick fired, and sheds only on two lagging ticks in a row', () => {
    expect(lagBeyondPeriodMs(250e6, 250)).toBe(0);
    expect(lagBeyondPeriodMs(249e6, 250)).toBe(0);
    expect(lagBeyondPeriodMs(1500e6, 250)).toBe(1250);
    expect(overloaded(1250, 1250, 1000)).toBe(true);
    // One pause: one late tick, and the one after it on time.
    expect(overloaded(0, 2750, 1000)).toBe(false);
    expect(overloaded(2750, 0, 1000)).toBe(false);
    expect(overloaded(1000, 1000, 1000)).toBe(false);
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
    // 1.5 s of a loop that gets a turn only every 250 ms (what a flood of synchronous work does),
    // with a request in each turn once the lag has lasted.
    let shed = null;
    const until = performance.now() + 1500;
    while (performance.now() < until) {
      busy(250);
      await new Promise((r) => setImmediate(r));
      const r = await h.app.inject({ method: 'GET', url: '/v1/jobs' });
      if (r.statusCode === 503) shed ??= r;
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

  it('serves the requests queued behind one pause instead of shedding them', async () => {
    // Let the lag of the test above settle (a tick on time), then block once for well past the
    // threshold, as a synchronous call would.
    await new Promise((r) => setTimeout(r, 200));
    busy(1500);
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      statuses.push((await h.app.inject({ method: 'GET', url: '/v1/jobs' })).statusCode);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(statuses).toEqual(Array(10).fill(200));
  });
});
