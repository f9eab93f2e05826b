// Environment settings, parsed once with zod. Everything has a default that works on a single
// machine: SQLite under ./data, artifacts under ./data/artifacts, datasets under ./data/datasets.
import path from 'node:path';
import { z } from 'zod';

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

export const SettingsSchema = z.object({
  PORT: int(3000, 0),
  HOST: z.string().default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** `file:<path>` (SQLite, default) or `postgres://...` / `postgresql://...` (optional `?schema=`). */
  DATABASE_URL: z.string().default('file:./data/qatserve.db'),
  /** Unset means "redis://127.0.0.1:6379" (and `serve` may start a redis-server child). */
  REDIS_URL: z.string().optional(),
  DATA_DIR: z.string().default('./data'),
  ARTIFACTS_DIR: z.string().optional(),
  DATA_ROOT: z.string().optional(),
  /** Largest accepted JSON body in bytes (413 above it). */
  BODY_LIMIT: int(1024 * 1024, 1),
  /**
   * Bull key prefix (and cancel channel). Unset: derived from the database's deployment id, so
   * deployments sharing one Redis never see each other's jobs.
   */
  QUEUE_PREFIX: z.string().min(1).optional(),
  /** Where models, checkpoints and manifests live: `fs` (under ARTIFACTS_DIR) or `postgres` (in DATABASE_URL's database). */
  ARTIFACT_STORE: z.enum(['fs', 'postgres']).default('fs'),
  /** Wall-clock limit per job from its first start; over it the job ends `failed` (JOB_TIMEOUT), keeping its last checkpoint. */
  JOB_TIMEOUT_MS: int(24 * 3600_000, 1000),
  /** How often the API's reconciler (one leader across replicas) repairs jobs whose queue entry is missing. */
  RECONCILE_INTERVAL_MS: int(30_000, 1000),
  /**
   * Bull lock lifetime. The training runs in a worker thread, so the worker's event loop renews
   * the lock every LOCK_DURATION_MS/2 even while a step computes for many seconds.
   */
  LOCK_DURATION_MS: int(30_000, 1000),
  /** How often workers look for jobs whose worker died (lock expired) and re-queue them. */
  STALLED_INTERVAL_MS: int(15_000, 500),
  /** Times a job may be re-queued after its worker died before it is failed. */
  MAX_STALLED_COUNT: int(5, 0),
  /** Grace period for in-flight requests / the training checkpoint on SIGTERM. */
  SHUTDOWN_TIMEOUT_MS: int(120_000, 1000),
});

export interface Settings {
  port: number;
  host: string;
  logLevel: z.infer<typeof SettingsSchema>['LOG_LEVEL'];
  databaseUrl: string;
  /** Always set (the default filled in); `redisUrlExplicit` says whether the user gave it. */
  redisUrl: string;
  redisUrlExplicit: boolean;
  dataDir: string;
  artifactsDir: string;
  dataRoot: string;
  bodyLimit: number;
  /** QUEUE_PREFIX, or (after bindDeployment) the one derived from the deployment id. */
  queuePrefix: string;
  queuePrefixExplicit: boolean;
  /** The database's deployment id: null until src/db/deployment.ts bindDeployment() fills it. */
  deploymentId: string | null;
  artifactStore: 'fs' | 'postgres';
  /** Local scratch space of a worker's running jobs (never shared, never the source of truth). */
  workDir: string;
  /** The API's local copies of model files, named by sha256. */
  modelCacheDir: string;
  jobTimeoutMs: number;
  reconcileIntervalMs: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  shutdownTimeoutMs: number;
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export class SettingsError extends Error {
  readonly code = 'SETTINGS_INVALID';
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const parsed = SettingsSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new SettingsError(`invalid environment settings:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.ARTIFACT_STORE === 'postgres' && !/^postgres(ql)?:\/\//.test(e.DATABASE_URL)) {
    throw new SettingsError(
      'invalid environment settings:\n  ARTIFACT_STORE: `postgres` keeps artifacts in the deployment\'s PostgreSQL, so DATABASE_URL must be a postgres:// URL',
    );
  }
  const dataDir = path.resolve(e.DATA_DIR);
  return {
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL ?? DEFAULT_REDIS_URL,
    redisUrlExplicit: e.REDIS_URL !== undefined,
    dataDir,
    artifactsDir: path.resolve(e.ARTIFACTS_DIR ?? path.join(dataDir, 'artifacts')),
    dataRoot: path.resolve(e.DATA_ROOT ?? path.join(dataDir, 'datasets')),
    bodyLimit: e.BODY_LIMIT,
    queuePrefix: e.QUEUE_PREFIX ?? '',
    queuePrefixExplicit: e.QUEUE_PREFIX !== undefined,
    deploymentId: null,
    artifactStore: e.ARTIFACT_STORE,
    workDir: path.join(dataDir, 'work'),
    modelCacheDir: path.join(dataDir, 'cache', 'models'),
    jobTimeoutMs: e.JOB_TIMEOUT_MS,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    lockDurationMs: e.LOCK_DURATION_MS,
    stalledIntervalMs: e.STALLED_INTERVAL_MS,
    maxStalledCount: e.MAX_STALLED_COUNT,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
  };
}
