// buildApp(deps): the whole HTTP API as a Fastify instance that has not listened yet. Tests call
// `app.inject()`; only server.ts calls `listen`. The API never trains and never imports tfjs.
//
// Plugin order is request order: load shedding (cheapest refusal first), auth (who is calling,
// then whether they may), the rate limit (per key or address), the body budget (before a body is
// read), then the routes. Serving (model registry + predictor pool) is a plugin like the others,
// registered the same way here for production and tests.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import proxyAddr from '@fastify/proxy-addr';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import type { Redis } from 'ioredis';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { ModelFileCache } from '../artifacts/model-cache.js';
import { AuthPolicy, isLoopbackHost } from '../auth/auth-policy.js';
import { KeyStore } from '../auth/key-store.js';
import type { Settings } from '../config/settings.js';
import type { Database } from '../db/database.js';
import type { JobWake } from '../jobs/job-events.js';
import { budgetOnMachine, jobBudget, machineMemoryBytes } from '../jobs/job-admission.js';
import { JobService, type CancelPort } from '../jobs/job-service.js';
import type { QueueProducer } from '../queue/training-queue.js';
import type { WorkerStatus } from '../queue/worker-supervisor.js';
import { ModelFiles, PrismaModelStore } from '../serving/model-store.js';
import { servingPlugin } from '../serving/plugin.js';
import { authPlugin } from './plugins/auth.js';
import { bodyBudgetPlugin } from './plugins/body-budget.js';
import { dashboardPlugin } from './plugins/dashboard.js';
import { docsPlugin } from './plugins/docs.js';
import { errorBody } from './error-body.js';
import { limitConnections } from './connection-limits.js';
import type { Refusal } from './capped-counts.js';
import { bodyCoding } from './content-coding.js';
import { parseJsonBody } from './json-body.js';
import { ServiceError, ValidationError } from '../jobs/job-errors.js';
import { errorsPlugin } from './plugins/errors.js';
import { loadSheddingPlugin } from './plugins/load-shedding.js';
import { metricsPlugin } from './plugins/metrics.js';
import { rateLimitPlugin } from './plugins/rate-limit.js';
import { healthRoutes } from './routes/health.js';
import { JobEventHub, jobEventRoutes, StreamSlots } from './routes/job-events.js';
import { jobRoutes } from './routes/jobs.js';
import { keyRoutes } from './routes/keys.js';
import { workerRoutes } from './routes/workers.js';
import { fleetBudgets, listFleet } from '../queue/worker-registry.js';
import { workersLacking } from '../queue/dataset-holders.js';
import { modelsRoutes } from './routes/models.js';
import { predictRoutes } from './routes/predict.js';

export interface AppDeps {
  settings: Settings;
  db: Database;
  /** Where models live (ARTIFACT_STORE); the serving layer fetches model files from it. */
  artifacts: ArtifactStore;
  queue: QueueProducer;
  cancel: CancelPort;
  /** Publishes "job X has new events" to every replica's event streams (Redis pub/sub). */
  wake?: JobWake;
  /** Round trip on the API's own Redis connection (the cancel publisher). */
  redisPing(): Promise<void>;
  /** A Redis connection for the rate-limit counters (shared across replicas; absent: per process) and the worker list. */
  redis?: Redis;
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

/** A caller's X-Request-Id is kept when it is a plain token (so logs join up across services). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestId(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
}

/** TRUST_PROXY=<n>: believe the nearest n hops of X-Forwarded-For (proxy-addr's rule for a number). */
function trustHops(n: number): (address: string, hop: number) => boolean {
  return (_address, hop) => hop < n;
}

/** Whether TRUST_PROXY trusts a socket's own address, i.e. takes it for a proxy's. */
function trustedPeer(trust: Settings['trustProxy']): (address: string) => boolean {
  if (typeof trust === 'boolean') return () => trust;
  const trusts = typeof trust === 'number' ? trustHops(trust) : proxyAddr.compile(trust);
  return (address) => trusts(address, 0);
}

/** A warning when sockets are refused, at most once a minute with the count since the last. */
function refusalLog(app: FastifyInstance): (reason: Refusal, address: string) => void {
  let refused = 0;
  let lastLog = 0;
  return (reason, address) => {
    refused++;
    const now = Date.now();
    if (now - lastLog < 60_000) return;
    app.log.warn({ refused, reason, address }, 'connections refused: MAX_CONNECTIONS_PER_CLIENT or MAX_CONNECTIONS reached');
    refused = 0;
    lastLog = now;
  };
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { settings } = deps;
  const app = Fastify({
    logger: deps.logger ?? { level: settings.logLevel },
    bodyLimit: settings.bodyLimit,
    // Anything else (control characters for log injection, 10 KB ids) is replaced by a fresh UUID.
    requestIdHeader: false,
    genReqId: requestId,
    // Slow clients: the whole request within REQUEST_TIMEOUT_MS, idle sockets closed after
    // CONNECTION_TIMEOUT_MS.
    requestTimeout: settings.limits.requestTimeoutMs,
    connectionTimeout: settings.limits.connectionTimeoutMs,
    // Node looks for requests past their time only every 30 s by default: a 30 s limit would then
    // hold a slow client for up to a minute.
    http: { connectionsCheckingInterval: 1000, headersTimeout: settings.limits.requestTimeoutMs, requestTimeout: settings.limits.requestTimeoutMs },
    trustProxy: typeof settings.trustProxy === 'number' ? trustHops(settings.trustProxy) : settings.trustProxy,
    // The router's own refusals (a path parameter that is not valid percent-encoding, or longer
    // than 100 characters) answer in the API's error shape, like every other error.
    frameworkErrors: (err, _req, reply) => {
      const [status, code, message] =
        err.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? [414, 'URL_PARAM_TOO_LONG', 'a path parameter is longer than 100 characters']
          : err.code === 'FST_ERR_BAD_URL'
            ? [400, 'URL_INVALID', 'the path is not valid percent-encoding']
            : [500, 'INTERNAL', 'internal server error'];
      void (reply as unknown as FastifyReply).status(status).send(errorBody(code, message));
    },
  });
  const connections = limitConnections(app.server, {
    perClient: settings.limits.maxConnectionsPerClient,
    max: settings.limits.maxConnections,
    exempt: trustedPeer(settings.trustProxy),
    onRefuse: refusalLog(app),
  });
  const jobs = new JobService({
    prisma: deps.db.prisma,
    queue: deps.queue,
    cancel: deps.cancel,
    wake: deps.wake,
    dataRoot: settings.dataRoot,
    // Under `qatserve serve` (a worker beside it) the worker reads this DATA_ROOT; an `api` holds
    // the datasets only when told where they are mounted.
    datasetsHere: deps.workerStatus !== undefined || settings.dataRootExplicit,
    artifacts: deps.artifacts,
    // Under `qatserve serve` the worker shares this machine: a job its memory cannot hold is
    // refused at the POST, as the worker would refuse it.
    budget: deps.workerStatus !== undefined ? budgetOnMachine(jobBudget(settings), machineMemoryBytes()) : jobBudget(settings),
    fleetMemoryBudgets: deps.redis ? () => fleetBudgets(deps.redis!, settings.queuePrefix, settings.workerRestartGraceMs) : undefined,
    synchronousDb: deps.db.provider === 'sqlite',
  });
  const keys = new KeyStore(deps.db.prisma);
  const routeList: string[] = [];
  app.decorate('routeList', routeList);
  app.addHook('onRoute', (r) => {
    // Hidden routes (static dashboard files, the docs UI itself) are not part of the API.
    if (r.schema?.hide) return;
    for (const m of [r.method].flat()) routeList.push(`${m} ${r.url}`);
  });
  app.decorate('jobs', jobs);
  app.decorate('deps', deps);
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
    // No answer is to be read as another type than it says, nor shown inside another site's page
    // (a framed dashboard on a loopback server with auth off could be clicked through).
    reply.header('x-content-type-options', 'nosniff');
    reply.header('x-frame-options', 'DENY');
  });

  // A request without a body (DELETE, POST .../cancel) that still says `content-type:
  // application/json`, as generic HTTP clients often do, has no body: it is not invalid JSON. Other
  // JSON is bounded in depth and values before it is parsed (src/api/json-body.ts).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body: string, done) => {
    if (body === '') return done(null, undefined);
    try {
      done(null, parseJsonBody(body, req.headers['content-type']));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  await app.register(errorsPlugin);
  // An encoded NUL in a path parameter or query value would reach the database (PostgreSQL refuses
  // it with an error, a 500): no id, name or cursor holds one.
  app.addHook('onRequest', async (req) => {
    if (/%00/i.test(req.url)) throw new ValidationError('URL_INVALID', 'the URL contains an encoded NUL character (%00)', []);
  });
  await app.register(loadSheddingPlugin, { maxEventLoopDelayMs: settings.limits.maxEventLoopDelayMs });
  await app.register(authPlugin, { policy: new AuthPolicy(settings.auth, settings.host, keys, Date.now, settings.allowedHosts) });
  await app.register(rateLimitPlugin, {
    loopback: isLoopbackHost(settings.host),
    perMinute: settings.limits.rateLimitPerMinute,
    burstPerSecond: settings.limits.rateLimitBurstPerSecond,
    redis: deps.redis,
    namespace: settings.queuePrefix,
  });
  // No route reads a compressed body: a gzip'd job config reached the JSON parser as its bytes (400
  // INVALID_JSON quoting them), and a plain one labelled `br` was taken as if unlabelled. 415 names
  // the coding and, as RFC 9110 15.5.16 asks, the one accepted; after auth, before a byte is read.
  app.addHook('preParsing', async (req, reply, payload) => {
    const coding = bodyCoding(req.headers);
    if (coding === null) return payload;
    reply.header('accept-encoding', 'identity');
    throw new ServiceError(
      415,
      'UNSUPPORTED_CONTENT_ENCODING',
      `request bodies are read as sent, uncompressed: Content-Encoding "${coding.slice(0, 40)}" is not accepted; send the body without it`,
    );
  });
  await app.register(bodyBudgetPlugin, {
    maxInFlight: settings.limits.maxBodyBytesInFlight,
    perClient: settings.limits.maxBodyBytesPerClient,
    loopback: isLoopbackHost(settings.host),
  });
  // Model files come from the artifact store through a local sha256-checked cache.
  const files = new ModelFiles(new ModelFileCache(deps.artifacts, settings.modelCacheDir, settings.modelCacheMaxBytes));
  await app.register(servingPlugin, { store: new PrismaModelStore(deps.db.prisma, files), settings: settings.serving });
  const streams = new StreamSlots(settings.limits.sseMaxStreamsPerClient, settings.limits.sseMaxStreams);
  const redis = deps.redis;
  const noRedis = () => Promise.reject(new Error('this API process has no Redis connection'));
  const fleet = redis ? () => listFleet(redis, settings.queuePrefix, settings.workerRestartGraceMs) : noRedis;
  const lackingFolder = redis ? (jobId: string) => workersLacking(redis, settings.queuePrefix, jobId) : noRedis;
  await app.register(metricsPlugin, {
    sources: {
      fleet,
      queueCounts: () => deps.queue.counts(),
      jobsByStatus: () => jobs.countByStatus(),
      openStreams: () => streams.open,
      connections: () => connections,
      bodies: () => app.bodyBudget,
      workerStatus: deps.workerStatus,
      serving: app.serving,
    },
  });
  await app.register(healthRoutes, {
    checks: { database: () => deps.db.ping(), redis: () => deps.redisPing(), queue: () => deps.queue.ping() },
    model: () => app.serving.registry.readiness(),
    workerStatus: deps.workerStatus,
  });
  await app.register(jobRoutes, {
    jobs,
    maxActiveJobsPerKey: settings.limits.maxActiveJobsPerKey,
    maxStoredJobsPerKey: settings.limits.maxStoredJobsPerKey,
    // This replica stops answering ?model= for it at once; the others at their next refresh.
    onModelDeleted: (modelId) => app.serving.registry.forget(modelId),
    fleet,
    lackingFolder,
  });
  const hub = new JobEventHub();
  hub.start(settings.redisUrl, settings.queuePrefix, settings.redisTimeoutMs);
  app.addHook('onClose', () => hub.close());
  await app.register(jobEventRoutes, { jobs, hub, heartbeatMs: settings.limits.sseHeartbeatMs, slots: streams });
  await app.register(modelsRoutes);
  await app.register(predictRoutes);
  await app.register(keyRoutes, { keys, jobs });
  await app.register(workerRoutes, { fleet });
  await app.register(docsPlugin);
  await app.register(dashboardPlugin);
  return app;
}
