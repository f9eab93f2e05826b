// /healthz: the process answers. /readyz: the database, Redis and the queue answer, and under
// `qatserve serve` its worker runs (503 otherwise, with the reason).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { WorkerStatus } from '../../queue/worker-supervisor.js';

export const HealthBody = z.object({ status: z.literal('ok'), uptimeSeconds: z.number() });

export const ReadyBody = z.object({
  status: z.enum(['ready', 'unavailable']),
  /** 'ok' or the failure per dependency. `worker`: under `qatserve serve` only, its worker child. */
  checks: z.object({ database: z.string(), redis: z.string(), queue: z.string(), worker: z.string().optional() }),
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

/** The worker child of `qatserve serve`: ok while it runs, else why not and when it restarts. */
export function workerCheck(w: WorkerStatus): string {
  if (w.state === 'running') return 'ok';
  if (w.state === 'stopped') return 'error: stopped';
  const inS = w.nextStartAt ? Math.max(0, Math.ceil((w.nextStartAt.getTime() - Date.now()) / 1000)) : 0;
  return `error: crashed (${w.lastExit}, ${w.consecutiveCrashes} in a row, ${w.restarts} restarts); restarting in ${inS} s`;
}

export async function healthRoutes(app: FastifyInstance, opts: { checks: ReadinessChecks; workerStatus?: () => WorkerStatus }) {
  app.get('/healthz', async () => ({ status: 'ok' as const, uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/readyz', async (_req, reply) => {
    const [database, redis, queue] = await Promise.all([
      check(opts.checks.database),
      check(opts.checks.redis),
      check(opts.checks.queue),
    ]);
    const checks = { database, redis, queue, ...(opts.workerStatus ? { worker: workerCheck(opts.workerStatus()) } : {}) };
    const failed = Object.entries(checks).filter(([, v]) => v !== 'ok');
    if (failed.length === 0) return { status: 'ready' as const, checks };
    const reason = failed.map(([k, v]) => `${k} ${v}`).join('; ');
    return reply.status(503).send({ status: 'unavailable' as const, checks, reason });
  });
}
