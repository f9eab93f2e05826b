// Load shedding: while the event loop lags more than MAX_EVENT_LOOP_DELAY_MS, requests get 503
// OVERLOADED with Retry-After at once, before any work is done for them, so a backlog drains
// instead of growing. /healthz still answers (the process is alive; restarting it would not help).
//
// Written here rather than with @fastify/under-pressure (used until the eighth session): that
// plugin samples the loop every 10 ms whatever the threshold, 100 wakeups a second for as long as
// the API runs, idle or not. On a machine where a worker trains on every core, each wakeup preempts
// a training thread (see README, issue 12). A lag of a second is seen as well by a probe every 250 ms.
//
// The lag is read at each tick of that probe: how late it fired. Shedding needs two lagging ticks in
// a row. One pause (a synchronous call of a few seconds, a long collection) makes one late tick and
// is over when it is seen: the requests queued behind it are served. The first version decided once a
// second from the mean of the samples; with four samples a second one pause dominated that mean, and
// the second after it was shed (seen in CI: the openapi test's 503 after a blocking `redocly lint`).
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { errorBody } from '../error-body.js';
import { lagBeyondPeriodMs } from '../event-loop-lag.js';

/**
 * The probe's period for a threshold: a quarter of it, so a lag past the threshold shows in several
 * ticks, from 10 ms (Node's finest useful timer) to 250 ms (four wakeups a second).
 */
export function lagProbeResolutionMs(maxEventLoopDelayMs: number): number {
  return Math.min(250, Math.max(10, Math.round(maxEventLoopDelayMs / 4)));
}

/** Shed while the last two ticks both lagged past the threshold: a lag that lasts, not one pause that is over. */
export function overloaded(previousLagMs: number, lagMs: number, maxEventLoopDelayMs: number): boolean {
  return previousLagMs > maxEventLoopDelayMs && lagMs > maxEventLoopDelayMs;
}

export const loadSheddingPlugin = fp(
  async function loadShedding(app: FastifyInstance, opts: { maxEventLoopDelayMs: number }) {
    const max = opts.maxEventLoopDelayMs;
    if (max <= 0) return;
    const period = lagProbeResolutionMs(max);
    let last = performance.now();
    let lagMs = 0;
    let shedding = false;
    // Node reschedules an interval from when its callback ran, so each tick's lateness is its own.
    const probe = setInterval(() => {
      const now = performance.now();
      const previous = lagMs;
      lagMs = lagBeyondPeriodMs((now - last) * 1e6, period);
      last = now;
      shedding = overloaded(previous, lagMs, max);
    }, period);
    probe.unref();
    app.addHook('onClose', async () => clearInterval(probe));
    app.addHook('onRequest', async (req, reply) => {
      if (!shedding || req.routeOptions.url === '/healthz') return;
      reply.status(503).header('retry-after', '1');
      reply.send(errorBody('OVERLOADED', `the server is overloaded (event loop delay ${Math.round(lagMs)} ms); retry shortly`));
      return reply;
    });
  },
  { name: 'qatserve-load-shedding', fastify: '5.x' },
);
