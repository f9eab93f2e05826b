// Prometheus metrics (prom-client) on a registry of this app's own, so several apps in one
// process (tests) don't collide: request counts and latencies, queue depth, jobs by status.
import type { FastifyInstance } from 'fastify';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import fp from 'fastify-plugin';
import { countByState, type WorkerState } from '../../queue/worker-registry.js';
import client from 'prom-client';
import type { WorkerStatus } from '../../queue/worker-supervisor.js';
import type { ServingService } from '../../serving/prediction-service.js';
import { lagBeyondPeriodMs } from '../event-loop-lag.js';

/** The period of the probe behind qatserve_nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds. */
const LAG_PROBE_MS = 100;
/** prom-client's own probe, parked: once an hour, its gauges replaced (see below). */
const PARKED_PROBE_MS = 3_600_000;
const lagSeconds = (ns: number) => lagBeyondPeriodMs(ns, LAG_PROBE_MS) / 1000;
/** prom-client's lag gauges by the name they end in, each read off the probe. */
const LAG_STATS: Record<string, (probe: IntervalHistogram) => number> = {
  min: (p) => lagSeconds(p.min),
  max: (p) => lagSeconds(p.max),
  mean: (p) => lagSeconds(p.mean),
  stddev: (p) => p.stddev / 1e9,
  p50: (p) => lagSeconds(p.percentile(50)),
  p90: (p) => lagSeconds(p.percentile(90)),
  p99: (p) => lagSeconds(p.percentile(99)),
};

/**
 * prom-client's event-loop lag gauges come from a probe due every 10 ms by default: 100 wakeups a
 * second for as long as the API runs, each one preempting a training thread where a worker trains
 * on every core. They also report the probe's period as lag, so a coarser probe would make an idle
 * loop read as lagging by its period. Here: a probe every 100 ms (it sees every stall of 100 ms or
 * more; shorter ones show in the request latency histogram) with its period taken off, under
 * prom-client's names. Set all at once by the first gauge's collect, then reset, as prom-client does.
 */
function registerEventLoopLag(app: FastifyInstance, registry: client.Registry, prefix: string): void {
  const probe = monitorEventLoopDelay({ resolution: LAG_PROBE_MS });
  probe.enable();
  app.addHook('onClose', async () => probe.disable());
  const gauges: Array<[client.Gauge, (probe: IntervalHistogram) => number]> = [];
  const collectAll = () => {
    if (probe.count === 0) return; // no sample since the last scrape: keep the last values
    for (const [gauge, read] of gauges) gauge.set(read(probe));
    probe.reset();
  };
  for (const [stat, read] of Object.entries(LAG_STATS)) {
    const name = `${prefix}nodejs_eventloop_lag_${stat}_seconds`;
    registry.removeSingleMetric(name);
    const gauge = new client.Gauge({
      name,
      help: `The ${stat} event loop lag over the samples since the last scrape (a probe every ${LAG_PROBE_MS} ms, its period not counted).`,
      registers: [registry],
      ...(gauges.length === 0 ? { collect: collectAll } : {}),
    });
    gauges.push([gauge, read]);
  }
}

export interface MetricsSources {
  queueCounts(): Promise<Record<string, number>>;
  jobsByStatus(): Promise<Record<string, number>>;
  /** Job event streams open in this process. */
  openStreams?: () => number;
  /** Sockets on this process's HTTP server: open now, and refused so far by the cap they met. */
  connections?: () => CappedSource;
  /** Bytes of request bodies held now, and requests refused so far by the cap they met. */
  bodies?: () => CappedSource;
  /** Under `qatserve serve`: its worker child. */
  workerStatus?: () => WorkerStatus;
  /** The deployment's live workers, and those away for less than WORKER_RESTART_GRACE_S (their entries in Redis). */
  fleet?: () => Promise<{ live: Array<{ state: WorkerState }>; away: unknown[] }>;
  /** This process's predictions (src/serving/prediction-service.ts) and the model it serves. */
  serving?: ServingSource;
}

/** What is held under two caps (src/api/capped-counts.ts): the amount now, and refusals by the cap they met. */
interface CappedSource {
  open: number;
  refused: Record<string, number>;
}

/** A gauge of what is held and a counter of refusals by reason, read at each scrape. */
function registerCapped(registry: client.Registry, source: () => CappedSource, names: { open: [string, string]; refused: [string, string] }) {
  new client.Gauge({
    name: names.open[0],
    help: names.open[1],
    registers: [registry],
    collect() {
      this.set(source().open);
    },
  });
  new client.Counter({
    name: names.refused[0],
    help: names.refused[1],
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(source().refused)) this.inc({ reason }, n);
    },
  });
}

/** What the metrics read of a ServingService: images in flight (PREDICT_MAX_QUEUE caps them), each image's outcome, the serving model. */
type ServingSource = Pick<ServingService, 'pending' | 'maxQueue' | 'onImage' | 'registry'>;

/** Seconds, for a stage of one image's prediction: a fast decode is under a millisecond, an AVIF's seconds. */
const STAGE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * What operators of a model server watch: images answered and refused (by code), where an answered
 * image's time went, how full the predictor queue is, how well requests batch, and which model
 * each replica serves (after a promotion, every replica should name the same one within MODEL_POLL_MS).
 */
function registerServing(registry: client.Registry, serving: ServingSource): void {
  const images = new client.Counter({
    name: 'qatserve_predict_images_total',
    help: 'Images by outcome: "ok" (answered) or the error code that refused it (IMAGE_CORRUPT, PREDICT_OVERLOADED, NO_MODEL, ...), for each image /v1/predict read and each image of a /v1/predict/batch request; a /v1/predict request refused before its image was read (wrong media type, not base64, over the byte limit) counts in qatserve_http_requests_total only',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const stages = new client.Histogram({
    name: 'qatserve_predict_stage_seconds',
    help: "Where an answered image's time went: decode (header check and decode to the model's input), queue (waiting for a decode turn or a predictor), inference (the ONNX Runtime run of its batch)",
    labelNames: ['stage'] as const,
    buckets: STAGE_BUCKETS,
    registers: [registry],
  });
  const batches = new client.Histogram({
    name: 'qatserve_predict_batch_size',
    help: 'Answered images by the size of the inference batch they ran in (PREDICT_MAX_BATCH, PREDICT_BATCH_WINDOW_MS)',
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [registry],
  });
  serving.onImage((outcome) => {
    if ('code' in outcome) return void images.inc({ outcome: outcome.code });
    images.inc({ outcome: 'ok' });
    const t = outcome.timings;
    stages.observe({ stage: 'decode' }, t.decodeMs / 1000);
    stages.observe({ stage: 'queue' }, t.queueMs / 1000);
    stages.observe({ stage: 'inference' }, t.inferMs / 1000);
    batches.observe(t.batchSize);
  });
  new client.Gauge({
    name: 'qatserve_predict_in_flight',
    help: `Images being decoded, waiting or inferred in this process; past PREDICT_MAX_QUEUE (${serving.maxQueue}) requests are refused 503 PREDICT_OVERLOADED`,
    registers: [registry],
    collect() {
      this.set(serving.pending());
    },
  });
  new client.Gauge({
    name: 'qatserve_serving_model_info',
    help: 'The model this process answers /v1/predict with (1): model_id and job_id ("" while none serves), state ok, none, fallback (an older model serves: the one that should failed to load here) or failing',
    labelNames: ['model_id', 'job_id', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const model = serving.registry.servingModel();
      this.set({ model_id: model?.id ?? '', job_id: model?.jobId ?? '', state: serving.registry.readiness().state }, 1);
    },
  });
}

export const metricsPlugin = fp(async function metrics(app: FastifyInstance, opts: { sources: MetricsSources }) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'qatserve_', eventLoopMonitoringPrecision: PARKED_PROBE_MS });
  registerEventLoopLag(app, registry, 'qatserve_');
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

  const fleet = opts.sources.fleet;
  if (fleet) {
    new client.Gauge({
      name: 'qatserve_workers',
      help: "The deployment's live workers by state (idle, training, waiting-for-disk), none at all: queued jobs wait; and those away (not heard from for less than WORKER_RESTART_GRACE_S: restarting, or gone), which jobs only they can run wait for",
      labelNames: ['state'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        const workers = await fleet().catch(() => null);
        if (!workers) return;
        for (const [state, n] of Object.entries(countByState(workers.live))) this.set({ state }, n);
        this.set({ state: 'away' }, workers.away.length);
      },
    });
  }

  const openStreams = opts.sources.openStreams;
  if (openStreams) {
    new client.Gauge({
      name: 'qatserve_event_streams_open',
      help: 'Job event streams (GET /v1/jobs/:id/events) open in this process; SSE_MAX_STREAMS caps them',
      registers: [registry],
      collect() {
        this.set(openStreams());
      },
    });
  }

  const { connections, bodies } = opts.sources;
  if (connections) {
    registerCapped(registry, connections, {
      open: ['qatserve_http_connections_open', 'Sockets open on this API process; MAX_CONNECTIONS and MAX_CONNECTIONS_PER_CLIENT cap them'],
      refused: [
        'qatserve_http_connections_refused_total',
        'Sockets answered 503 and closed unread: reason "client" (MAX_CONNECTIONS_PER_CLIENT) or "total" (MAX_CONNECTIONS)',
      ],
    });
  }
  if (bodies) {
    registerCapped(registry, bodies, {
      open: [
        'qatserve_http_body_bytes_in_flight',
        'Bytes of request bodies this API process holds (admitted, not yet answered); MAX_BODY_BYTES_IN_FLIGHT and MAX_BODY_BYTES_PER_CLIENT cap them',
      ],
      refused: [
        'qatserve_http_bodies_refused_total',
        'Requests refused before their body was read: reason "client" (429 TOO_MANY_UPLOADS, MAX_BODY_BYTES_PER_CLIENT) or "total" (503 UPLOADS_FULL, MAX_BODY_BYTES_IN_FLIGHT)',
      ],
    });
  }

  if (opts.sources.serving) registerServing(registry, opts.sources.serving);

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
    // A counter (it only grows while serve runs), as its _total says: promtool flagged the gauge.
    new client.Counter({
      name: 'qatserve_worker_restarts_total',
      help: 'Times the worker process was restarted after it died',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(worker().restarts);
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
