// /healthz: the process answers. /readyz: the database, Redis and the queue answer (503 otherwise).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';

export const HealthBody = z.object({ status: z.literal('ok'), uptimeSeconds: z.number() });

export const ReadyBody = z.object({
  status: z.enum(['ready', 'unavailable']),
  /** 'ok' or the failure per dependency. */
  checks: z.object({ database: z.string(), redis: z.string(), queue: z.string() }),
  /** Why the service is not ready (absent when ready). */
  reason: z.string().optional(),
});

export interface ReadinessChecks {
  database(): Promise<void>;
  redis(): Promise<void>;
  queue(): Promise<void>;
}

const CHECK_TIMEOUT_MS = 1500;

async function check(fn: () => Promise<void>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return 'ok';
  } catch (err) {
    return `error: ${(err as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
}

export async function healthRoutes(app: FastifyInstance, opts: { checks: ReadinessChecks }) {
  app.get('/healthz', async () => ({ status: 'ok' as const, uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/readyz', async (_req, reply) => {
    const [database, redis, queue] = await Promise.all([
      check(opts.checks.database),
      check(opts.checks.redis),
      check(opts.checks.queue),
    ]);
    const checks = { database, redis, queue };
    const failed = Object.entries(checks).filter(([, v]) => v !== 'ok');
    if (failed.length === 0) return { status: 'ready' as const, checks };
    const reason = failed.map(([k, v]) => `${k} ${v}`).join('; ');
    return reply.status(503).send({ status: 'unavailable' as const, checks, reason });
  });
}
