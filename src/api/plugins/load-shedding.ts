// Load shedding with @fastify/under-pressure: while the event loop lags more than
// MAX_EVENT_LOOP_DELAY_MS (sampled every second), requests get 503 OVERLOADED with Retry-After at
// once, before any work is done for them, so a backlog drains instead of growing. /healthz still
// answers (the process is alive; restarting it would not help).
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { errorBody } from '../error-body.js';

export const loadSheddingPlugin = fp(
  async function loadShedding(app: FastifyInstance, opts: { maxEventLoopDelayMs: number }) {
    if (opts.maxEventLoopDelayMs <= 0) return;
    await app.register(underPressure, {
      maxEventLoopDelay: opts.maxEventLoopDelayMs,
      pressureHandler: (req, reply, type, value) => {
        // Undefined lets the request through. Infinity means the last second had no sample at all
        // (start-up, one long pause): not a backlog to shed.
        if (req.routeOptions.url === '/healthz' || !Number.isFinite(Number(value))) return;
        reply.status(503).header('retry-after', '1');
        // A returned value is what under-pressure sends (its types say void; its code sends it).
        return errorBody('OVERLOADED', `the server is overloaded (${type} ${Math.round(Number(value))} ms); retry shortly`) as unknown as void;
      },
    });
  },
  { name: 'qatserve-load-shedding', fastify: '5.x' },
);
