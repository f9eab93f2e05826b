// buildApp(deps): the whole HTTP API as a Fastify instance that has not listened yet. Tests call
// `app.inject()`; only server.ts calls `listen`. The API never trains and never imports tfjs.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Settings } from '../config/settings.js';
import type { Database } from '../db/database.js';
import { JobService, type CancelPort } from '../jobs/job-service.js';
import type { QueueProducer } from '../queue/training-queue.js';
import { dashboardPlugin } from './plugins/dashboard.js';
import { docsPlugin } from './plugins/docs.js';
import { errorsPlugin } from './plugins/errors.js';
import { metricsPlugin } from './plugins/metrics.js';
import { healthRoutes } from './routes/health.js';
import { jobRoutes } from './routes/jobs.js';

export interface AppDeps {
  settings: Settings;
  db: Database;
  queue: QueueProducer;
  cancel: CancelPort;
  /** Round trip on the API's own Redis connection (the cancel publisher). */
  redisPing(): Promise<void>;
  /** pino options, or false for silence (tests). */
  logger?: FastifyServerOptions['logger'];
}

declare module 'fastify' {
  interface FastifyInstance {
    jobs: JobService;
    deps: AppDeps;
  }
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: deps.logger ?? { level: deps.settings.logLevel },
    bodyLimit: deps.settings.bodyLimit,
    // A caller's X-Request-Id is kept (so logs join up across services); otherwise a fresh UUID.
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
  });
  const jobs = new JobService({
    prisma: deps.db.prisma,
    queue: deps.queue,
    cancel: deps.cancel,
    dataRoot: deps.settings.dataRoot,
  });
  app.decorate('jobs', jobs);
  app.decorate('deps', deps);
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  await app.register(errorsPlugin);
  await app.register(metricsPlugin, {
    sources: { queueCounts: () => deps.queue.counts(), jobsByStatus: () => jobs.countByStatus() },
  });
  await app.register(healthRoutes, {
    checks: { database: () => deps.db.ping(), redis: deps.redisPing, queue: () => deps.queue.ping() },
  });
  await app.register(jobRoutes, { jobs });
  await registerServingRoutes(app, deps);
  await app.register(docsPlugin);
  await app.register(dashboardPlugin);
  return app;
}

/**
 * The prediction and model routes come from the serving layer (src/api/routes/predict.ts and
 * models.ts, each a Fastify plugin). They are loaded when present so the spine builds and runs
 * before and after they land; they receive the same deps as every other route.
 */
async function registerServingRoutes(app: FastifyInstance, deps: AppDeps): Promise<void> {
  const here = fileURLToPath(import.meta.url);
  const ext = path.extname(here); // .ts under vitest/tsx, .js in dist
  for (const name of ['models', 'predict']) {
    const file = path.join(path.dirname(here), 'routes', `${name}${ext}`);
    if (!fs.existsSync(file)) continue;
    const mod = (await import(pathToHref(file))) as Record<string, unknown>;
    const plugin = (mod.default ?? mod[`${name}Routes`]) as Parameters<FastifyInstance['register']>[0] | undefined;
    if (typeof plugin !== 'function') throw new Error(`${file} exports no Fastify plugin`);
    await app.register(plugin, { prisma: deps.db.prisma, db: deps.db, settings: deps.settings } as never);
  }
}

function pathToHref(file: string): string {
  return new URL(`file://${file}`).href;
}
