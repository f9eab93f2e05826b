// Environment settings, parsed once with zod. Everything has a default that works on a single
// machine: SQLite under ./data, artifacts under ./data/artifacts, datasets under ./data/datasets.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DatabaseUrlError, isPostgresUrl, parseDatabaseUrl } from '../db/database-url.js';
import { PG_TIMEOUTS, type PgTimeouts } from '../db/pg-pool.js';
import { usableCores } from './cpu-quota.js';

const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max).default(def);
const MB = 1024 * 1024;
/** Bull's workers block on BRPOPLPUSH for its drainDelay (5 s): REDIS_TIMEOUT_MS must outlast that wait. */
export const REDIS_TIMEOUT_MIN_MS = 6_000;

function isRedisUrl(url: string): boolean {
  if (!/^rediss?:\/\//.test(url)) return false;
  try {
    return new URL(url).hostname !== '';
  } catch {
    return false;
  }
}

/** DATABASE_URL checked as the processes will read it, so a bad one is a settings error at start-up. */
function databaseUrlIssues(url: string, ctx: z.RefinementCtx): void {
  try {
    parseDatabaseUrl(url);
  } catch (err) {
    if (!(err instanceof DatabaseUrlError)) throw err;
    ctx.addIssue({ code: 'custom', message: err.message });
  }
}

export const SettingsSchema = z.object({
  PORT: int(3000, 0, 65535).describe('TCP port of the API.'),
  HOST: z.string().min(1).default('127.0.0.1').describe('Loopback by default: listening on every interface (`0.0.0.0`) is an explicit choice.'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('Least severe log level written (pino levels).'),
  DATABASE_URL: z
    .string()
    .min(1)
    .superRefine(databaseUrlIssues)
    .optional()
    .describe(
      '`file:<path>` (SQLite; default `<DATA_DIR>/qatserve.db`) or `postgres://...` / `postgresql://...` (optional `?schema=`; libpq `options=` kept, e.g. `options=-c%20statement_timeout%3D60000`; a Unix socket as `postgresql://user@/db?host=/var/run/postgresql`). One host: a libpq multi-host failover URL is refused; name the endpoint that follows the primary (a managed writer endpoint, HAProxy with the Patroni health check, a virtual IP).',
    ),
  DATABASE_CONNECT_TIMEOUT_MS: int(PG_TIMEOUTS.connectMs, 100).describe(
    'PostgreSQL only: longest wait for a connection (a free one of the pool, or a new one). Past it an API request answers 503 DATABASE_UNAVAILABLE instead of waiting for a database that stopped answering.',
  ),
  DATABASE_QUERY_TIMEOUT_MS: int(PG_TIMEOUTS.queryMs, 100).describe(
    "PostgreSQL only: longest wait for a query's answer; the connection is then dropped and a new one made. Without it a network partition or failover held queries until TCP gave up (about 15 minutes).",
  ),
  REDIS_URL: z
    .string()
    // ioredis reads anything: `http://h:6379` as host "http", `bad` as host "bad". What it cannot
    // mean is said at start-up rather than as a host that cannot be found.
    .refine(isRedisUrl, 'must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0')
    .optional()
    .describe(
      '`redis://[user:password@]host:port[/db]` (`rediss://` for TLS, a private CA trusted through `NODE_EXTRA_CA_CERTS`). Unset means "redis://127.0.0.1:6379" (and `serve` may start a redis-server child).',
    ),
  REDIS_TIMEOUT_MS: int(10_000, REDIS_TIMEOUT_MIN_MS).describe(
    "Longest wait for Redis's answer; the connection is then dropped and made anew, looking its host up again. Without it a network partition or failover held commands, and every rate-limited request, until TCP gave up (about 15 minutes). At least 6000: Bull's workers wait 5 s for a job in one command.",
  ),
  DATA_DIR: z.string().default('./data').describe("Local data: the SQLite file, workers' scratch under `work/`, the API's model cache under `cache/models/`."),
  ARTIFACTS_DIR: z.string().optional().describe('Root of the `fs` artifact store. Unset: `<DATA_DIR>/artifacts`.'),
  DATA_ROOT: z
    .string()
    .optional()
    .describe(
      "Where `imagefolder` dataset paths are resolved (and must stay): on a worker, where it reads them. Unset: `<DATA_DIR>/datasets` (for `qatserve train`: the working directory). `qatserve serve`, and an `api` given DATA_ROOT (the workers' datasets mounted there too), answer a folder missing there with 400; an `api` without it checks only the path's form and leaves the folder and its classes to the worker that takes the job.",
    ),
  BODY_LIMIT: int(1024 * 1024, 1).describe('Largest accepted JSON body in bytes (413 above it).'),
  QUEUE_PREFIX: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Bull key prefix (and cancel channel). Unset: derived from the database's deployment id, so deployments sharing one Redis never see each other's jobs.",
    ),
  ARTIFACT_STORE: z
    .enum(['fs', 'postgres'])
    .optional()
    .describe(
      "Where models, checkpoints and manifests live: `fs` (under ARTIFACTS_DIR) or `postgres` (in DATABASE_URL's database). Unset: `postgres` when DATABASE_URL is PostgreSQL (machines of one deployment then share nothing else), `fs` with SQLite. `fs` with PostgreSQL needs ARTIFACTS_DIR on a disk every API and worker machine mounts.",
    ),
  JOB_TIMEOUT_MS: int(24 * 3600_000, 1000).describe(
    'Wall-clock limit per job from its first start; over it the job ends `failed` (JOB_TIMEOUT), keeping its last checkpoint.',
  ),
  RECONCILE_INTERVAL_MS: int(30_000, 1000).describe("How often the API's reconciler (one leader across replicas) repairs jobs whose queue entry is missing."),
  LOCK_DURATION_MS: int(30_000, 1000).describe(
    "Bull lock lifetime. The training runs in a worker thread, so the worker's event loop renews the lock every LOCK_DURATION_MS/2 even while a step computes for many seconds.",
  ),
  STALLED_INTERVAL_MS: int(15_000, 500).describe('How often workers look for jobs whose worker died (lock expired) and re-queue them.'),
  PROGRESS_WRITE_INTERVAL_MS: int(1000, 0).describe(
    "How long a running job's steps may wait before the worker writes them to the database, all since the last write in one transaction; a poll, the live curve and a missed cancel lag by up to this. 0 writes every step at once (a write per step cost the worker 7-15 ms of CPU). A phase's image counts (progress.phase: reading an image folder, an evaluation, the export) are written as often.",
  ),
  MAX_STALLED_COUNT: int(5, 0).describe('Times a job may be re-queued after its worker died before it is failed.'),
  // At most the 24 h a worker's last-seen entry is kept (WORKER_SEEN_TTL_S).
  WORKER_RESTART_GRACE_S: int(600, 0, 24 * 3600).describe(
    "How long a worker that is no longer heard from (a restart, a redeploy, a crash) still counts for the jobs only it can run: one over every other worker's JOB_MEMORY_BUDGET_MB, or one whose image folder only it has. Such a job waits on the queue for it meanwhile (the API admits it, a worker without room or the folder leaves it), instead of failing on the first worker that takes it; after this long it fails JOB_TOO_LARGE or DATASET_NOT_FOUND, saying why. 0: only live workers count.",
  ),
  SHUTDOWN_TIMEOUT_MS: int(120_000, 1000).describe('Grace period for in-flight requests / the training checkpoint on SIGTERM.'),

  // --- access and limits (src/auth, src/api/plugins) ---
  AUTH: z
    .enum(['auto', 'on', 'off'])
    .default('auto')
    .describe(
      '`auto`: on, except on a loopback HOST while no API key has been created. `on`: always. `off`: never (a warning at every start). A non-loopback HOST with no key refuses to start.',
    ),
  ALLOWED_HOSTS: z
    .string()
    .optional()
    .describe(
      'Comma-separated host names (no port) an API on a loopback HOST answers while auth is off, besides localhost: e.g. the name a proxy on this machine passes in Host. Requests for any other host are refused 403 HOST_NOT_ALLOWED (a web page re-pointing its own name at 127.0.0.1, DNS rebinding, would otherwise reach the open API). An Origin header naming one of them also counts as a page of this API (CROSS_SITE_REQUEST). With a key, keys decide.',
    ),
  RATE_LIMIT_PER_MINUTE: int(600, 0).describe('Requests per minute per API key (per client address when anonymous), across replicas; 0 = no limit.'),
  RATE_LIMIT_BURST_PER_SECOND: int(20, 0).describe('The same, per second: a key may not spend its minute in one burst; 0 = no burst limit.'),
  MAX_ACTIVE_JOBS_PER_KEY: int(4, 0).describe('Jobs one API key may have queued or running at once; 0 = no cap.'),
  MAX_STORED_JOBS_PER_KEY: int(1000, 0).describe(
    'Jobs one API key may have in the database, finished ones included (deleting one frees its place), so a key cannot grow the database without bound; 0 = no cap.',
  ),
  JOB_MEMORY_BUDGET_MB: int(4000, 64).describe(
    "A job whose estimated peak memory (wasm heap: training or export) exceeds this is refused (JOB_TOO_LARGE). The wasm32 heap cannot pass 4096 MiB; the estimate lies above every measured heap, the largest 3787 MiB (1.0@224, batch 33, on one thread, from step 10 on). A worker holds it to its machine's memory (or cgroup limit) less 384 MiB, divided by 1.25 for the rest of the process.",
  ),
  JOB_DISK_BUDGET_MB: int(1024, 16).describe('A job whose estimated peak disk use (checkpoints kept + model) exceeds this is refused.'),
  WORKER_DISK_RESERVE_MB: int(256, 0).describe(
    "Free space a worker keeps on DATA_DIR's disk. It takes a job only while the free space covers the job's estimated disk use plus this; short of it, it leaves the job on the queue for other workers and takes none until there is room (checked every 5 s). A job whose disk fills up (or turns read-only) midway goes back to the queue the same way, to resume from its last stored checkpoint (the second time in a row on one worker it fails WORKER_DISK_FULL or WORKER_DISK_READ_ONLY). A job larger than the whole disk less this fails JOB_TOO_LARGE. A worker whose disk is no larger than this refuses to start.",
  ),
  REQUEST_TIMEOUT_MS: int(30_000, 1000).describe('Time a client has to send a whole request (headers and body).'),
  CONNECTION_TIMEOUT_MS: int(60_000, 1000).describe('An idle socket is closed after this long.'),
  MAX_CONNECTIONS_PER_CLIENT: int(256, 0).describe(
    'Sockets one client address (an IPv6 /64) may hold open on one API process; past it the socket is answered 503 TOO_MANY_CONNECTIONS and closed, its request not run. Addresses TRUST_PROXY trusts are not capped (a proxy carries many clients: cap them there). 0 = no cap.',
  ),
  MAX_CONNECTIONS: z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .describe(
      'Sockets one API process holds open in all; past it 503 CONNECTIONS_FULL, so the process keeps file descriptors for its own files. Unset: the open-file limit less 1024 (half of it when that is 2048 or less); no cap where the limit cannot be read. 0 = no cap.',
    ),
  MAX_BODY_BYTES_IN_FLIGHT: int(256 * MB, 0).describe(
    "Bytes of request bodies one API process holds at once (an upload is held from its first byte until its answer is sent). A body is admitted before it is read, by its Content-Length (a chunked one at its route's limit); past the cap 503 UPLOADS_FULL with Retry-After, the body unread. One body alone always gets in. Memory use is up to about twice this while bodies are joined. 0 = no cap.",
  ),
  MAX_BODY_BYTES_PER_CLIENT: int(64 * MB, 0).describe(
    'The same per API key (per address when anonymous): past it 429 TOO_MANY_UPLOADS with Retry-After. A loopback server with auth off does not cap its one client. 0 = no cap.',
  ),
  SSE_HEARTBEAT_MS: int(15_000, 100).describe(
    "A comment line on each job event stream (GET /v1/jobs/:id/events) when nothing else was sent for this long, so proxies and load balancers do not close a quiet stream. Keep it below CONNECTION_TIMEOUT_MS and below any proxy's idle timeout.",
  ),
  SSE_MAX_STREAMS_PER_CLIENT: int(8, 0).describe(
    'Job event streams one API key (one address when anonymous) may hold open at once on one API process; past it 429 TOO_MANY_STREAMS. A stream lasts as long as its job and reads the database on every write of it, so streams are admitted, not only rate-limited. 0 = no cap.',
  ),
  SSE_MAX_STREAMS: int(200, 0).describe('Job event streams one API process holds open in all; past it 503 STREAMS_FULL with Retry-After. 0 = no cap.'),
  MAX_EVENT_LOOP_DELAY_MS: int(1000, 0).describe('Event-loop delay above which the API answers 503 + Retry-After (load shedding); 0 = off.'),
  TRUST_PROXY: z
    .string()
    .default('false')
    .describe(
      "Fastify's trustProxy: `false` (default: the socket address is the client), `true`, a hop count, or comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed.",
    ),

  /**
   * CPU threads one training job keeps busy. 1: the training step only, with each batch decoded
   * and augmented on the same thread between steps; 2 or more: the next batch is rendered in a
   * thread of its own while the step trains. Default: every core for `qatserve worker`, one fewer
   * under `qatserve serve`, so /v1/predict keeps a core (see defaultTrainThreads).
   */
  TRAIN_THREADS: z.coerce
    .number()
    .int()
    .min(1)
    .max(256)
    .optional()
    .describe(
      "CPU threads a training job may use. Unset: all cores for `worker` and `train`, cores - 1 under `serve` (so /v1/predict keeps one); a CPU quota (a container's --cpus, a Kubernetes limit) caps the cores. A training step large enough to pay (1.0 at 224 px, not 0.35 at 32 px) is split over that many threads (data-parallel, batch norm over the whole batch; wasm and cpu backends); with 2 or more, the next batches are also prepared in a separate thread while the step trains (decoded, and augmented there unless the step is split: then each training thread renders its own rows of the next batch while it waits for the others).",
    ),

  // --- serving (src/serving) ---
  PREDICT_WORKERS: int(2, 1).describe('Inference worker threads, one ORT intra-op thread each.'),
  PREDICT_BATCH_WINDOW_MS: z.coerce
    .number()
    .min(0)
    .max(1000)
    .default(2)
    .describe('Micro-batching window: how long a request waits for others to share its run.'),
  PREDICT_MAX_BATCH: int(8, 1).describe('Most images one inference run takes (micro-batching).'),
  PREDICT_MAX_QUEUE: int(64, 1).describe('Predictions in flight at once (decoding, waiting, running); above it: 503 + Retry-After.'),
  PREDICT_MAX_IMAGE_BYTES: int(10 * MB, 1024).describe(
    'Largest upload in bytes (413 above it): one image, or the images of a /v1/predict/batch request together; base64 JSON bodies may be 4/3 of it.',
  ),
  PREDICT_MAX_IMAGES_PER_REQUEST: int(16, 1).describe(
    'Most images one POST /v1/predict/batch carries (400 TOO_MANY_IMAGES above it); at most PREDICT_MAX_QUEUE, as each takes a place in it.',
  ),
  PREDICT_MAX_IMAGE_PIXELS: int(4096 * 4096, 1).describe(
    "Most pixels decoding one image may hold (400 IMAGE_TOO_LARGE above it, from the header, before decoding). A baseline JPEG decodes at up to 1/8 scale for the model's input, so a camera's 48 MP photo holds 0.76 MP; other images (progressive JPEG too) are held whole. Over 268402689 pixels nothing is decoded.",
  ),
  MODEL_POLL_MS: int(2000, 0).describe('How often the registry looks for a newer or promoted model.'),
  PREDICT_MAX_EXTRA_MODELS: int(1, 0).describe('Non-serving models (?model=) kept loaded at once.'),
  PREDICT_MODEL_LOADS_PER_MINUTE: int(6, 0).describe(
    'Models an API process loads on demand (?model= naming one not loaded) per minute, one at a time; past it 503 MODEL_LOADS_BUSY with Retry-After. 0: no limit, and loads in parallel.',
  ),
  MODEL_CACHE_MAX_MB: int(2048, 1).describe(
    'Disk the API may use for local copies of model files from the artifact store; least recently used go first (copies of deleted models sooner: every tenth model poll).',
  ),

  // --- training engine and processes (src/ml, src/cli.ts) ---
  TFJS_BACKEND: z
    .string()
    .optional()
    .describe('`tensorflow`, `wasm` or `cpu`: the tfjs backend for training and export, which must start. Unset: the first of those that starts.'),
  QATSERVE_FUSED_OPS: z
    .string()
    .optional()
    .describe("`off` keeps stock tfjs ops instead of the wasm-training module's fused QAT ops (for comparisons and bisecting)."),
  QATSERVE_WASM_SIMD: z.string().optional().describe("`0` turns the wasm-training kernels' SIMD paths off."),
  QATSERVE_SKIP_MIGRATE: z
    .string()
    .optional()
    .describe('Set (to anything) by `qatserve serve` for the workers it starts, which then do not run migrations (serve ran them).'),
});

export interface ServingSettings {
  workers: number;
  batchWindowMs: number;
  maxBatch: number;
  maxQueue: number;
  maxImagesPerRequest: number;
  maxImageBytes: number;
  maxImagePixels: number;
  pollMs: number;
  maxExtraModels: number;
  maxLoadsPerMinute: number;
}

export interface LimitSettings {
  rateLimitPerMinute: number;
  rateLimitBurstPerSecond: number;
  maxActiveJobsPerKey: number;
  maxStoredJobsPerKey: number;
  jobMemoryBudgetBytes: number;
  jobDiskBudgetBytes: number;
  workerDiskReserveBytes: number;
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
  maxConnectionsPerClient: number;
  /** MAX_CONNECTIONS, else defaultMaxConnections(); 0 = no cap. */
  maxConnections: number;
  maxEventLoopDelayMs: number;
  maxBodyBytesInFlight: number;
  maxBodyBytesPerClient: number;
  sseHeartbeatMs: number;
  sseMaxStreamsPerClient: number;
  sseMaxStreams: number;
}

export interface Settings {
  port: number;
  host: string;
  logLevel: z.infer<typeof SettingsSchema>['LOG_LEVEL'];
  databaseUrl: string;
  /** How long PostgreSQL may keep a query waiting (DATABASE_CONNECT_TIMEOUT_MS, DATABASE_QUERY_TIMEOUT_MS). */
  databaseTimeouts: PgTimeouts;
  /** Always set (the default filled in); `redisUrlExplicit` says whether the user gave it. */
  redisUrl: string;
  redisUrlExplicit: boolean;
  /** REDIS_TIMEOUT_MS: how long a Redis connection waits for an answer before it is made anew. */
  redisTimeoutMs: number;
  dataDir: string;
  artifactsDir: string;
  dataRoot: string;
  /** Whether DATA_ROOT was given (`qatserve train` defaults to the working directory instead). */
  dataRootExplicit: boolean;
  bodyLimit: number;
  /** QUEUE_PREFIX, or (after bindDeployment) the one derived from the deployment id. */
  queuePrefix: string;
  queuePrefixExplicit: boolean;
  /** The database's deployment id: null until src/db/deployment.ts bindDeployment() fills it. */
  deploymentId: string | null;
  artifactStore: 'fs' | 'postgres';
  /** Local scratch space of a worker's running jobs (never shared, never the source of truth). */
  workDir: string;
  /** The API's local copies of model files, named by sha256, and their byte budget. */
  modelCacheDir: string;
  modelCacheMaxBytes: number;
  jobTimeoutMs: number;
  /** CPU threads a training job may keep busy (TRAIN_THREADS, else defaultTrainThreads('worker')). */
  trainThreads: number;
  /** Whether TRAIN_THREADS was given (`serve` gives its worker one core fewer otherwise). */
  trainThreadsExplicit: boolean;
  reconcileIntervalMs: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  progressWriteIntervalMs: number;
  maxStalledCount: number;
  shutdownTimeoutMs: number;
  /** WORKER_RESTART_GRACE_S in ms: see listFleet. */
  workerRestartGraceMs: number;
  /** QATSERVE_SKIP_MIGRATE: a worker started by `serve` leaves migrations to it. */
  skipMigrate: boolean;
  /** How the tfjs engine runs training and export (the worker passes these to its training thread). */
  engine: EngineSettings;
  auth: 'auto' | 'on' | 'off';
  /** ALLOWED_HOSTS: host names a loopback API with auth off answers besides localhost. */
  allowedHosts: string[];
  trustProxy: boolean | number | string[];
  limits: LimitSettings;
  serving: ServingSettings;
}

const EngineSettingsSchema = SettingsSchema.pick({ TFJS_BACKEND: true, QATSERVE_FUSED_OPS: true, QATSERVE_WASM_SIMD: true });

/** The tfjs engine's switches (TFJS_BACKEND, QATSERVE_FUSED_OPS, QATSERVE_WASM_SIMD), read. */
export interface EngineSettings {
  /** The backend that must start (as given, e.g. `wasm`); undefined: the first that starts. */
  backend: string | undefined;
  /** The wasm-training module's fused QAT ops (QATSERVE_FUSED_OPS is not `off`). */
  fusedOps: boolean;
  /** The wasm-training kernels' SIMD paths (QATSERVE_WASM_SIMD is not `0`). */
  wasmSimd: boolean;
}

function toEngine(e: z.infer<typeof EngineSettingsSchema>): EngineSettings {
  return { backend: e.TFJS_BACKEND, fusedOps: (e.QATSERVE_FUSED_OPS ?? '').toLowerCase() !== 'off', wasmSimd: e.QATSERVE_WASM_SIMD !== '0' };
}

/**
 * The engine settings alone, for what runs the ML code without the rest of the settings: the
 * backend selection's defaults (src/ml/backend.ts) and the benches. These must not depend on the
 * rest of the environment being valid.
 */
export function engineSettings(env: NodeJS.ProcessEnv = process.env): EngineSettings {
  return toEngine(EngineSettingsSchema.parse(env));
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
export const DEFAULT_DATABASE_URL = 'file:./data/qatserve.db';

export class SettingsError extends Error {
  readonly code = 'SETTINGS_INVALID';
}

/**
 * TRAIN_THREADS when it is not set: all `cores` for a dedicated worker; under `serve`, where the
 * API's inference workers share the machine, `cores - 1` (at least 1). The cores are those a CPU
 * quota leaves (a container's `--cpus`, a Kubernetes limit), not the host's.
 */
export function defaultTrainThreads(role: 'worker' | 'serve', cores = usableCores()): number {
  return role === 'serve' ? Math.max(1, cores - 1) : Math.max(1, cores);
}

/**
 * MAX_CONNECTIONS when it is not set: the sockets a process can hold while keeping descriptors for
 * its database, Redis, model files and dashboard files. 0 (no cap) for an unknown limit.
 */
export function defaultMaxConnections(openFiles: number | null): number {
  if (openFiles === null) return 0;
  return openFiles <= 2048 ? Math.floor(openFiles / 2) : openFiles - 1024;
}

/** This process's open-file limit (Node raises the soft limit to the hard one at start), on Linux. */
function openFileLimit(): number | null {
  try {
    const line = fs
      .readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line ? /^Max open files\s+(\d+)/.exec(line) : null;
    return soft ? Number(soft[1]) : null;
  } catch {
    return null;
  }
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const parsed = SettingsSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new SettingsError(`invalid environment settings:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const postgres = isPostgresUrl(e.DATABASE_URL ?? '');
  if (e.ARTIFACT_STORE === 'postgres' && !postgres) {
    throw new SettingsError(
      "invalid environment settings:\n  ARTIFACT_STORE: `postgres` keeps artifacts in the deployment's PostgreSQL, so DATABASE_URL must be a postgres:// URL",
    );
  }
  const dataDir = path.resolve(e.DATA_DIR);
  // Processes that share a PostgreSQL database are often on different machines, which share no
  // disk: an fs store there left each API unable to open the models its workers wrote.
  const artifactStore = e.ARTIFACT_STORE ?? (postgres ? 'postgres' : 'fs');
  return {
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    // The SQLite file lives in DATA_DIR unless DATABASE_URL says otherwise (one volume holds all).
    databaseUrl: e.DATABASE_URL ?? (env.DATA_DIR ? `file:${path.join(dataDir, 'qatserve.db')}` : DEFAULT_DATABASE_URL),
    databaseTimeouts: { connectMs: e.DATABASE_CONNECT_TIMEOUT_MS, queryMs: e.DATABASE_QUERY_TIMEOUT_MS },
    redisUrl: e.REDIS_URL ?? DEFAULT_REDIS_URL,
    redisUrlExplicit: e.REDIS_URL !== undefined,
    redisTimeoutMs: e.REDIS_TIMEOUT_MS,
    dataDir,
    artifactsDir: path.resolve(e.ARTIFACTS_DIR ?? path.join(dataDir, 'artifacts')),
    dataRoot: path.resolve(e.DATA_ROOT ?? path.join(dataDir, 'datasets')),
    dataRootExplicit: e.DATA_ROOT !== undefined,
    bodyLimit: e.BODY_LIMIT,
    queuePrefix: e.QUEUE_PREFIX ?? '',
    queuePrefixExplicit: e.QUEUE_PREFIX !== undefined,
    deploymentId: null,
    artifactStore,
    workDir: path.join(dataDir, 'work'),
    modelCacheDir: path.join(dataDir, 'cache', 'models'),
    modelCacheMaxBytes: e.MODEL_CACHE_MAX_MB * MB,
    jobTimeoutMs: e.JOB_TIMEOUT_MS,
    trainThreads: e.TRAIN_THREADS ?? defaultTrainThreads('worker'),
    trainThreadsExplicit: e.TRAIN_THREADS !== undefined,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    lockDurationMs: e.LOCK_DURATION_MS,
    stalledIntervalMs: e.STALLED_INTERVAL_MS,
    progressWriteIntervalMs: e.PROGRESS_WRITE_INTERVAL_MS,
    maxStalledCount: e.MAX_STALLED_COUNT,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    workerRestartGraceMs: e.WORKER_RESTART_GRACE_S * 1000,
    skipMigrate: Boolean(e.QATSERVE_SKIP_MIGRATE),
    engine: toEngine(e),
    auth: e.AUTH,
    // Host names compare without case: lowered once here, not on every request.
    allowedHosts: (e.ALLOWED_HOSTS ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    limits: {
      rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
      rateLimitBurstPerSecond: e.RATE_LIMIT_BURST_PER_SECOND,
      maxActiveJobsPerKey: e.MAX_ACTIVE_JOBS_PER_KEY,
      maxStoredJobsPerKey: e.MAX_STORED_JOBS_PER_KEY,
      jobMemoryBudgetBytes: e.JOB_MEMORY_BUDGET_MB * MB,
      jobDiskBudgetBytes: e.JOB_DISK_BUDGET_MB * MB,
      workerDiskReserveBytes: e.WORKER_DISK_RESERVE_MB * MB,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      connectionTimeoutMs: e.CONNECTION_TIMEOUT_MS,
      maxConnectionsPerClient: e.MAX_CONNECTIONS_PER_CLIENT,
      maxConnections: e.MAX_CONNECTIONS ?? defaultMaxConnections(openFileLimit()),
      maxBodyBytesInFlight: e.MAX_BODY_BYTES_IN_FLIGHT,
      maxBodyBytesPerClient: e.MAX_BODY_BYTES_PER_CLIENT,
      maxEventLoopDelayMs: e.MAX_EVENT_LOOP_DELAY_MS,
      sseHeartbeatMs: e.SSE_HEARTBEAT_MS,
      sseMaxStreamsPerClient: e.SSE_MAX_STREAMS_PER_CLIENT,
      sseMaxStreams: e.SSE_MAX_STREAMS,
    },
    serving: {
      workers: e.PREDICT_WORKERS,
      batchWindowMs: e.PREDICT_BATCH_WINDOW_MS,
      maxBatch: e.PREDICT_MAX_BATCH,
      maxQueue: e.PREDICT_MAX_QUEUE,
      maxImagesPerRequest: e.PREDICT_MAX_IMAGES_PER_REQUEST,
      maxImageBytes: e.PREDICT_MAX_IMAGE_BYTES,
      maxImagePixels: e.PREDICT_MAX_IMAGE_PIXELS,
      pollMs: e.MODEL_POLL_MS,
      maxExtraModels: e.PREDICT_MAX_EXTRA_MODELS,
      maxLoadsPerMinute: e.PREDICT_MODEL_LOADS_PER_MINUTE,
    },
  };
}

function parseTrustProxy(v: string): boolean | number | string[] {
  const t = v.trim().toLowerCase();
  if (t === 'false' || t === '') return false;
  if (t === 'true') return true;
  if (/^\d+$/.test(t)) return Number(t);
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
