// Prometheus metrics (prom-client) on a registry of this app's own, so several apps in one
// process (tests) don't collide: request counts and latencies, queue depth, jobs by status.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import client from 'prom-client';
import type { WorkerStatus } from '../../queue/worker-supervisor.js';

/** The period of the probe behind qatserve_nodejs_eventloop_lag_*. */
const EVENT_LOOP_LAG_PRECISION_MS = 100;

export interface MetricsSources {
  queueCounts(): Promise<Record<string, number>>;
  jobsByStatus(): Promise<Record<string, number>>;
  /** Under `qatserve serve`: its worker child. */
  workerStatus?: () => WorkerStatus;
}

export const metricsPlugin = fp(async function metrics(app: FastifyInstance, opts: { sources: MetricsSources }) {
  const registry = new client.Registry();
  // prom-client's event-loop lag probe fires every 10 ms by default: 100 wakeups a second, each
  // one preempting a training thread where a worker trains on every core. At 100 ms it still sees
  // every stall of 100 ms or more (shorter ones show in the request latency histogram).
  client.collectDefaultMetrics({ register: registry, prefix: 'qatserve_', eventLoopMonitoringPrecision: EVENT_LOOP_LAG_PRECISION_MS });
  const requests = new client.Counter({
    name: 'qatserve_http_requests_total',
    help: 'HTTP requests by method, route and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const latency = new client.Histogram({
    name: 'qatserve_http_request_duration_seconds',
    help: 'HTTP request latency by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new client.Gauge({
    name: 'qatserve_queue_jobs',
    help: 'Bull training queue jobs by state (waiting is the queue depth)',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const counts = await opts.sources.queueCounts().catch(() => null);
      for (const [state, n] of Object.entries(counts ?? {})) this.set({ state }, n);
    },
  });
  new client.Gauge({
    name: 'qatserve_jobs',
    help: 'Training jobs in the database by status',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const counts = await opts.sources.jobsByStatus().catch(() => null);
      for (const [status, n] of Object.entries(counts ?? {})) this.set({ status }, n);
    },
  });

  const worker = opts.sources.workerStatus;
  if (worker) {
    new client.Gauge({
      name: 'qatserve_worker_up',
      help: "1 while qatserve serve's worker process runs, 0 while it is being restarted",
      registers: [registry],
      collect() {
        this.set(worker().state === 'running' ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'qatserve_worker_restarts_total',
      help: 'Times the worker process was restarted after it died',
      registers: [registry],
      collect() {
        this.set(worker().restarts);
      },
    });
    new client.Gauge({
      name: 'qatserve_worker_restart_backoff_seconds',
      help: 'Delay before the current (or last) worker restart: doubles with each crash in a row, capped',
      registers: [registry],
      collect() {
        this.set(worker().backoffMs / 1000);
      },
    });
  }

  app.addHook('onResponse', async (req, reply) => {
    // The route pattern, not the URL, so ids don't explode the label set.
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    latency.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });

  app.get('/metrics', { config: { access: 'public' } }, async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
});
