// RATE_LIMIT_PER_MINUTE per API key, or per client address for anonymous and invalid callers,
// counted in Redis (@fastify/rate-limit's store: one INCR + PEXPIRE script per request), so the
// limit holds across API replicas. Over it: 429 RATE_LIMITED with Retry-After. A fixed one-minute
// window alone lets a key spend its whole minute in its first second (600 database queries at
// once, with every other caller, health checks included, queued behind them), so a one-second
// window, RATE_LIMIT_BURST_PER_SECOND, caps bursts as well. /healthz is exempt
// (`config: {rateLimit: false}`): probes must not compete with clients. So is a loopback server
// with auth off (no key created yet): only this machine can reach it, and a local script
// classifying a folder should not be throttled. Without Redis (down, or not given) requests are
// let through rather than refused: the limit protects the service, it must not become the outage.
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import { ServiceError } from '../../jobs/job-errors.js';

export class RateLimitedError extends ServiceError {
  constructor(
    max: number,
    window: 'minute' | 'second',
    who: 'API key' | 'address',
    readonly retryAfterSeconds: number,
  ) {
    super(429, 'RATE_LIMITED', `more than ${max} requests in a ${window} from this ${who}; retry in ${retryAfterSeconds} s`);
    this.name = 'RateLimitedError';
  }
}

/** Who a request counts against. */
export function rateLimitKey(req: FastifyRequest): string {
  const p = req.principal;
  return p && p.kind === 'key' ? `key:${p.key.id}` : `ip:${req.ip}`;
}

const who = (req: FastifyRequest) => (req.principal?.kind === 'key' ? 'API key' : 'address');

export interface RateLimitOptions {
  /** The server listens on loopback only: requests with auth off are not limited. */
  loopback: boolean;
  perMinute: number;
  burstPerSecond: number;
  /** Shared store; absent: an in-process counter (tests, single replica without Redis). */
  redis?: Redis;
  /** Redis key prefix (the deployment's queue prefix). */
  namespace: string;
}

export const rateLimitPlugin = fp(
  async function limits(app: FastifyInstance, opts: RateLimitOptions) {
    if (opts.perMinute <= 0 && opts.burstPerSecond <= 0) return;
    const exempt = (req: FastifyRequest) => opts.loopback && req.principal?.authOff === true;
    await app.register(rateLimit, {
      allowList: exempt,
      global: opts.perMinute > 0,
      max: opts.perMinute,
      timeWindow: 60_000,
      redis: opts.redis,
      nameSpace: `${opts.namespace}:rate:`,
      skipOnError: true,
      keyGenerator: rateLimitKey,
      errorResponseBuilder: (req, ctx) => new RateLimitedError(ctx.max, 'minute', who(req), Math.max(1, Math.ceil(ctx.ttl / 1000))),
    });
    if (opts.burstPerSecond <= 0) return;
    const burst = app.createRateLimit({ max: opts.burstPerSecond, timeWindow: 1000, keyGenerator: rateLimitKey });
    const check: onRequestAsyncHookHandler = async (req, reply) => {
      if (exempt(req)) return;
      const r = await burst(req);
      if (r.isAllowed || !r.isExceeded) return;
      reply.header('x-ratelimit-burst', String(r.max));
      throw new RateLimitedError(r.max, 'second', who(req), 1);
    };
    // Runs after the per-minute check (its hook is added to each route first).
    app.addHook('onRoute', (route) => {
      if (route.config?.rateLimit === false) return;
      route.onRequest = [...(route.onRequest ? [route.onRequest].flat() : []), check];
    });
  },
  { name: 'qatserve-rate-limit', fastify: '5.x', dependencies: ['qatserve-auth'] },
);
