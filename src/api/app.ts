// buildApp(deps): the whole HTTP API as a Fastify instance that has not listened yet. Tests call
// `app.inject()`; only server.ts calls `listen`. The API never trains and never imports tfjs.
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { ModelFileCache } from '../artifacts/model-cache.js';
import type { Settings } from '../config/settings.js';
import type { Database } from '../db/database.js';
import { JobService, type CancelPort } from '../jobs/job-service.js';
import type { QueueProducer } from '../queue/training-queue.js';
import type { WorkerStatus } from '../queue/worker-supervisor.js';
import { ModelFiles } from '../serving/model-store.js';
import { dashboardPlugin } from './plugins/dashboard.js';
import { docsPlugin } from './plugins/docs.js';
import { errorsPlugin } from './plugins/errors.js';
import { metricsPlugin } from './plugins/metrics.js';
import { healthRoutes } from './routes/health.js';
import { jobRoutes } from './routes/jobs.js';
import { modelsRoutes } from './routes/models.js';
import { predictRoutes } from './routes/predict.js';

export interface AppDeps {
  settings: Settings;
  db: Database;
  /** Where models live (ARTIFACT_STORE); the serving layer fetches model files from it. */
  artifacts: ArtifactStore;
  queue: QueueProducer;
  cancel: CancelPort;
  /** Round trip on the API's own Redis connection (the cancel publisher). */
  redisPing(): Promise<void>;
  /** Under `qatserve serve`: the state of its worker child (restarts, backoff), for /readyz and /metrics. */
  workerStatus?: () => WorkerStatus;
  /** pino options, or false for silence (tests). */
  logger?: FastifyServerOptions['logger'];
}

declare module 'fastify' {
  interface FastifyInstance {
    jobs: JobService;
    deps: AppDeps;
    /** Every route registered, as `METHOD /path` (the OpenAPI test checks them against the doc). */
    routeList: string[];
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
  const routeList: string[] = [];
  app.decorate('routeList', routeList);
  app.addHook('onRoute', (r) => {
    // Hidden routes (static dashboard files, the docs UI itself) are not part of the API.
    if ((r.schema as { hide?: boolean } | undefined)?.hide) return;
    for (const m of [r.method].flat()) routeList.push(`${m} ${r.url}`);
  });
  app.decorate('jobs', jobs);
  app.decorate('deps', deps);
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  await app.register(errorsPlugin);
  await app.register(metricsPlugin, {
    sources: { queueCounts: () => deps.queue.counts(), jobsByStatus: () => jobs.countByStatus(), workerStatus: deps.workerStatus },
  });
  await app.register(healthRoutes, {
    checks: { database: () => deps.db.ping(), redis: deps.redisPing, queue: () => deps.queue.ping() },
    workerStatus: deps.workerStatus,
  });
  await app.register(jobRoutes, { jobs });
  // Prediction and model routes (src/serving): they share one predictor pool per Prisma client,
  // and take model files from the artifact store through a local sha256-checked cache.
  const files = new ModelFiles(new ModelFileCache(deps.artifacts, deps.settings.modelCacheDir));
  await app.register(modelsRoutes, { prisma: deps.db.prisma, files });
  await app.register(predictRoutes, { prisma: deps.db.prisma, files });
  await app.register(docsPlugin);
  await app.register(dashboardPlugin);
  return app;
}

