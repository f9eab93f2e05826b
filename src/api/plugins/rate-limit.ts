// RATE_LIMIT_PER_MINUTE per API key, or per client address for anonymous and invalid callers,
// counted in Redis (@fastify/rate-limit's store: one INCR + PEXPIRE script per request), so the
// limit holds across API replicas. Over it: 429 RATE_LIMITED with Retry-After. /healthz is
// exempt (`config: {rateLimit: false}`): probes must not compete with clients. Without Redis (down, or not given) requests are
// let through rather than refused: the limit protects the service, it must not become the outage.
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import { ServiceError } from '../../jobs/job-errors.js';

export class RateLimitedError extends ServiceError {
  constructor(
    max: number,
    who: 'API key' | 'address',
    readonly retryAfterSeconds: number,
  ) {
    super(429, 'RATE_LIMITED', `more than ${max} requests in a minute from this ${who}; retry in ${retryAfterSeconds} s`);
    this.name = 'RateLimitedError';
  }
}

/** Who a request counts against. */
export function rateLimitKey(req: FastifyRequest): string {
  const p = req.principal;
  return p && p.kind === 'key' ? `key:${p.key.id}` : `ip:${req.ip}`;
}

export interface RateLimitOptions {
  perMinute: number;
  /** Shared store; absent: an in-process counter (tests, single replica without Redis). */
  redis?: Redis;
  /** Redis key prefix (the deployment's queue prefix). */
  namespace: string;
}

export const rateLimitPlugin = fp(
  async function limits(app: FastifyInstance, opts: RateLimitOptions) {
    if (opts.perMinute <= 0) return;
    await app.register(rateLimit, {
      global: true,
      max: opts.perMinute,
      timeWindow: 60_000,
      redis: opts.redis,
      nameSpace: `${opts.namespace}:rate:`,
      skipOnError: true,
      keyGenerator: rateLimitKey,
      errorResponseBuilder: (req, ctx) =>
        new RateLimitedError(ctx.max, req.principal?.kind === 'key' ? 'API key' : 'address', Math.max(1, Math.ceil(ctx.ttl / 1000))),
    });
  },
  { name: 'qatserve-rate-limit', fastify: '5.x', dependencies: ['qatserve-auth'] },
);
