// /healthz: the process answers. /readyz: the database, Redis and the queue answer, and under
// `qatserve serve` its worker runs (503 otherwise), plus what the serving model is doing. Both are
// open; /readyz gives an anonymous caller only a word per check (ok/failing; the model:
// ok/none/fallback/failing), and the error text only to an admin key (or with auth off), because
// error texts name hosts and files.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { isAdmin } from '../../auth/auth-policy.js';
import type { WorkerStatus } from '../../queue/worker-supervisor.js';
import type { RegistryReadiness } from '../../serving/model-registry.js';
import { withTimeout } from '../../with-timeout.js';

export const HealthBody = z.object({ status: z.literal('ok'), uptimeSeconds: z.number() });

export const ReadyBody = z.object({
  status: z.enum(['ready', 'unavailable']),
  /**
   * Per dependency: `ok`, else `failing` (anonymous callers) or `error: <why>` (admin). `worker`:
   * under `qatserve serve` only, its worker child. `model`: `ok` (serving the model it should),
   * `none` (no model yet), `fallback` (the model that should serve cannot be loaded; an older one
   * serves), `failing` (it cannot be loaded and nothing serves); the admin view adds the reason. The
   * model never makes the API unready: training still works.
   */
  checks: z.object({ database: z.string(), redis: z.string(), queue: z.string(), worker: z.string().optional(), model: z.string() }),
  /** Why the service is not ready, for admins (absent when ready). */
  reason: z.string().optional(),
});

export interface ReadinessChecks {
  database: () => Promise<void>;
  redis: () => Promise<void>;
  queue: () => Promise<void>;
}

const CHECK_TIMEOUT_MS = 1500;

async function check(fn: () => Promise<void>): Promise<string> {
  try {
    await withTimeout(fn(), CHECK_TIMEOUT_MS, 'the check');
    return 'ok';
  } catch (err) {
    return `error: ${(err as Error).message}`;
  }
}

/** The admin's line about the serving model. */
export function modelDetail(m: RegistryReadiness): string {
  if (m.state === 'fallback') return `fallback: serving ${m.servingId} because ${m.wantedId} cannot be loaded (${m.reason})`;
  if (m.state === 'failing') return `failing: ${m.wantedId} cannot be loaded (${m.reason}) and no other model can serve`;
  return m.state;
}

/** The worker child of `qatserve serve`: ok while it runs, else why not and when it restarts. */
export function workerCheck(w: WorkerStatus): string {
  if (w.state === 'running') return 'ok';
  if (w.state === 'stopped') return 'error: stopped';
  const inS = w.nextStartAt ? Math.max(0, Math.ceil((w.nextStartAt.getTime() - Date.now()) / 1000)) : 0;
  return `error: crashed (${w.lastExit}, ${w.consecutiveCrashes} in a row, ${w.restarts} restarts); restarting in ${inS} s`;
}

export async function healthRoutes(app: FastifyInstance, opts: { checks: ReadinessChecks; model: () => RegistryReadiness; workerStatus?: () => WorkerStatus }) {
  app.get('/healthz', { config: { access: 'public', rateLimit: false } }, async () => ({ status: 'ok' as const, uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/readyz', { config: { access: 'public' } }, async (req, reply) => {
    const [database, redis, queue] = await Promise.all([check(opts.checks.database), check(opts.checks.redis), check(opts.checks.queue)]);
    const deps = { database, redis, queue, ...(opts.workerStatus ? { worker: workerCheck(opts.workerStatus()) } : {}) };
    const m = opts.model();
    const failed = Object.entries(deps).filter(([, v]) => v !== 'ok');
    if (m.state !== 'ok' && m.state !== 'none') req.log.warn({ model: m }, 'readyz: serving model not as it should be');
    const status = failed.length === 0 ? ('ready' as const) : ('unavailable' as const);
    const code = failed.length === 0 ? 200 : 503;
    if (!isAdmin(req.principal)) {
      const word = (v: string) => (v === 'ok' ? 'ok' : 'failing');
      const words = Object.fromEntries(Object.entries(deps).map(([k, v]) => [k, word(v)]));
      return reply.status(code).send({ status, checks: { ...words, model: m.state } });
    }
    const body = { status, checks: { ...deps, model: modelDetail(m) } };
    if (failed.length === 0) return reply.status(code).send(body);
    return reply.status(code).send({ ...body, reason: failed.map(([k, v]) => `${k} ${v}`).join('; ') });
  });
}
