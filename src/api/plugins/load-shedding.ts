// Load shedding: while the event loop lags more than MAX_EVENT_LOOP_DELAY_MS (the mean lag over the
// last second), requests get 503 OVERLOADED with Retry-After at once, before any work is done for
// them, so a backlog drains instead of growing. /healthz still answers (the process is alive;
// restarting it would not help).
//
// Written here rather than with @fastify/under-pressure (used until the eighth session): that
// plugin samples the loop every 10 ms whatever the threshold, 100 wakeups a second for as long as
// the API runs, idle or not. On a machine where a worker trains on every core, each wakeup preempts
// a training thread (see README, issue 12). A lag of a second is seen as well by a probe every 250 ms.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { errorBody } from '../error-body.js';
import { lagBeyondPeriodMs } from '../event-loop-lag.js';

/** How often the shedding decision is re-made from the probe's samples. */
const DECISION_INTERVAL_MS = 1000;

/**
 * The probe's period for a threshold: a quarter of it, so a lag past the threshold shows in several
 * samples, from 10 ms (Node's finest useful timer) to 250 ms (four wakeups a second).
 */
export function lagProbeResolutionMs(maxEventLoopDelayMs: number): number {
  return Math.min(250, Math.max(10, Math.round(maxEventLoopDelayMs / 4)));
}

/**
 * The loop's mean lag over the samples taken. No sample at all means one pause longer than the
 * decision interval that is over now: not a backlog, so no lag.
 */
export function meanLagMs(samples: { count: number; meanNs: number }, resolutionMs: number): number {
  return samples.count > 0 ? lagBeyondPeriodMs(samples.meanNs, resolutionMs) : 0;
}

export const loadSheddingPlugin = fp(
  async function loadShedding(app: FastifyInstance, opts: { maxEventLoopDelayMs: number }) {
    if (opts.maxEventLoopDelayMs <= 0) return;
    const resolution = lagProbeResolutionMs(opts.maxEventLoopDelayMs);
    const probe = monitorEventLoopDelay({ resolution });
    probe.enable();
    let lagMs = 0;
    const decide = setInterval(() => {
      lagMs = meanLagMs({ count: probe.count, meanNs: probe.mean }, resolution);
      probe.reset();
    }, DECISION_INTERVAL_MS);
    decide.unref();
    app.addHook('onClose', async () => {
      clearInterval(decide);
      probe.disable();
    });
    app.addHook('onRequest', async (req, reply) => {
      if (lagMs <= opts.maxEventLoopDelayMs || req.routeOptions.url === '/healthz') return;
      reply.status(503).header('retry-after', '1');
      reply.send(errorBody('OVERLOADED', `the server is overloaded (event loop delay ${Math.round(lagMs)} ms); retry shortly`));
      return reply;
    });
  },
  { name: 'qatserve-load-shedding', fastify: '5.x' },
);
