import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { usableCores } from '../../src/config/cpu-quota.js';
import { defaultTrainThreads, engineSettings, loadSettings, SettingsError } from '../../src/config/settings.js';
import { parseDatabaseUrl, postgresServer } from '../../src/db/database-url.js';
import { redisServer } from '../../src/queue/redis-connection.js';
import { Redis } from 'ioredis';

describe('settings', () => {
  it('defaults to a single-machine setup under ./data', () => {
    const s = loadSettings({});
    expect(s).toMatchObject({
      port: 3000,
      databaseUrl: 'file:./data/qatserve.db',
      redisUrl: 'redis://127.0.0.1:6379',
      redisUrlExplicit: false,
      dataDir: path.resolve('data'),
      artifactsDir: path.resolve('data/artifacts'),
      dataRoot: path.resolve('data/datasets'),
      queuePrefixExplicit: false,
      deploymentId: null,
      artifactStore: 'fs',
      workDir: path.resolve('data/work'),
      modelCacheDir: path.resolve('data/cache/models'),
      modelCacheMaxBytes: 2048 * 1024 * 1024,
      jobTimeoutMs: 24 * 3600_000,
      host: '127.0.0.1',
      auth: 'auto',
      trustProxy: false,
      limits: {
        rateLimitPerMinute: 600,
        rateLimitBurstPerSecond: 20,
        maxActiveJobsPerKey: 4,
        jobMemoryBudgetBytes: 4000 * 2 ** 20,
        jobDiskBudgetBytes: 1024 * 2 ** 20,
      },
      serving: {
        workers: 2,
        batchWindowMs: 2,
        maxBatch: 8,
        maxQueue: 64,
        maxImagePixels: 4096 * 4096,
        maxImageBytes: 10 * 2 ** 20,
        pollMs: 2000,
        maxExtraModels: 1,
      },
    });
  });
  it('keeps the SQLite file inside DATA_DIR unless DATABASE_URL says otherwise (one volume holds all)', () => {
    expect(loadSettings({ DATA_DIR: '/data' }).databaseUrl).toBe('file:/data/qatserve.db');
    expect(loadSettings({ DATA_DIR: '/data', DATABASE_URL: 'postgresql://h/db' }).databaseUrl).toBe('postgresql://h/db');
    expect(loadSettings({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadSettings({ TRUST_PROXY: '10.0.0.1, 10.0.0.0/8' }).trustProxy).toEqual(['10.0.0.1', '10.0.0.0/8']);
    expect(() => loadSettings({ AUTH: 'maybe' })).toThrow(/AUTH/);
    expect(loadSettings({}).allowedHosts).toEqual([]);
    expect(loadSettings({ ALLOWED_HOSTS: 'qatserve.internal, box.lan ,' }).allowedHosts).toEqual(['qatserve.internal', 'box.lan']);
    expect(loadSettings({ ALLOWED_HOSTS: 'Proxy.Internal' }).allowedHosts).toEqual(['proxy.internal']);
  });
  it('TRAIN_THREADS: every core for a worker, one fewer under serve (at least 1), or as set', () => {
    expect(defaultTrainThreads('worker', 2)).toBe(2);
    expect(defaultTrainThreads('serve', 2)).toBe(1);
    expect(defaultTrainThreads('serve', 8)).toBe(7);
    expect(defaultTrainThreads('serve', 1)).toBe(1);
    expect(loadSettings({}).trainThreads).toBe(usableCores());
    expect(loadSettings({ TRAIN_THREADS: '1' })).toMatchObject({ trainThreads: 1, trainThreadsExplicit: true });
    expect(loadSettings({}).trainThreadsExplicit).toBe(false);
    expect(() => loadSettings({ TRAIN_THREADS: '0' })).toThrow(/TRAIN_THREADS/);
    expect(() => loadSettings({ TRAIN_THREADS: 'two' })).toThrow(/TRAIN_THREADS/);
  });
  it('reads the engine switches with the rest, and on their own for code that runs without the server', () => {
    expect(loadSettings({}).engine).toEqual({ backend: undefined, fusedOps: true, wasmSimd: true });
    expect(loadSettings({ TFJS_BACKEND: 'wasm', QATSERVE_FUSED_OPS: 'OFF', QATSERVE_WASM_SIMD: '0' }).engine).toEqual({
      backend: 'wasm',
      fusedOps: false,
      wasmSimd: false,
    });
    // A bench or the training thread needs only these to be valid.
    expect(engineSettings({ QATSERVE_WASM_SIMD: '0', PORT: 'http' })).toEqual({ backend: undefined, fusedOps: true, wasmSimd: false });
    expect(loadSettings({}).dataRootExplicit).toBe(false);
    expect(loadSettings({ DATA_ROOT: '/srv/images' })).toMatchObject({ dataRoot: '/srv/images', dataRootExplicit: true });
  });
  it('keeps artifacts in PostgreSQL by default when the database is PostgreSQL, and only then', () => {
    expect(loadSettings({ ARTIFACT_STORE: 'postgres', DATABASE_URL: 'postgresql://u@h/db' }).artifactStore).toBe('postgres');
    expect(loadSettings({ DATABASE_URL: 'postgres://u@h/db?schema=q' }).artifactStore).toBe('postgres');
    expect(loadSettings({ DATABASE_URL: 'postgresql://u@h/db', ARTIFACT_STORE: 'fs' }).artifactStore).toBe('fs');
    expect(loadSettings({}).artifactStore).toBe('fs');
    expect(loadSettings({ DATABASE_URL: 'file:/srv/q.db' }).artifactStore).toBe('fs');
    expect(() => loadSettings({ ARTIFACT_STORE: 'postgres' })).toThrow(/ARTIFACT_STORE[\s\S]*DATABASE_URL/);
    expect(() => loadSettings({ ARTIFACT_STORE: 's3' })).toThrow(/ARTIFACT_STORE/);
  });
  it('reads overrides and names every bad variable', () => {
    const s = loadSettings({ PORT: '8080', REDIS_URL: 'redis://r:1', DATA_DIR: '/srv/q', LOCK_DURATION_MS: '5000' });
    expect(s).toMatchObject({ port: 8080, redisUrlExplicit: true, artifactsDir: '/srv/q/artifacts', lockDurationMs: 5000 });
    expect(() => loadSettings({ PORT: 'http', LOG_LEVEL: 'loud' })).toThrow(SettingsError);
    expect(() => loadSettings({ PORT: 'http', LOG_LEVEL: 'loud' })).toThrow(/PORT[\s\S]*LOG_LEVEL|LOG_LEVEL[\s\S]*PORT/);
    // ioredis took these as the host names "http" and "bad".
    for (const url of ['http://h:6379', 'bad', 'redis://'])
      expect(() => loadSettings({ REDIS_URL: url })).toThrow(/REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(loadSettings({ REDIS_URL: 'rediss://u:p@h:6380/2' }).redisUrl).toBe('rediss://u:p@h:6380/2');
    // Node's listen threw a RangeError with its stack for this.
    expect(() => loadSettings({ PORT: '99999' })).toThrow(/PORT: Too big: expected number to be <=65535/);
  });
  it('parses database URLs: SQLite file, PostgreSQL with its schema', () => {
    expect(parseDatabaseUrl('file:./data/x.db')).toEqual({ provider: 'sqlite', file: path.resolve('data/x.db') });
    expect(parseDatabaseUrl('postgresql://u@h:5432/db?schema=run_1')).toEqual({
      provider: 'postgres',
      connectionString: 'postgresql://u@h:5432/db',
      schema: 'run_1',
    });
    expect(parseDatabaseUrl('postgres://u@h/db')).toMatchObject({ schema: 'public' });
    expect(() => parseDatabaseUrl('postgres://u@h/db?schema=a;drop')).toThrow(/identifier/);
    expect(() => parseDatabaseUrl('mysql://x')).toThrow(/file: or postgres/);
  });
  it("parses libpq's Unix-socket URLs, keeping their parameters but `schema`", () => {
    expect(parseDatabaseUrl('postgresql://u@/db?host=/var/run/postgresql&schema=s1&sslmode=disable')).toEqual({
      provider: 'postgres',
      connectionString: 'postgresql://u@/db?host=%2Fvar%2Frun%2Fpostgresql&sslmode=disable',
      schema: 's1',
    });
    expect(parseDatabaseUrl('postgresql://u@%2Fvar%2Frun%2Fpostgresql/db')).toEqual({
      provider: 'postgres',
      connectionString: 'postgresql://u@%2Fvar%2Frun%2Fpostgresql/db',
      schema: 'public',
    });
  });
  it('names the PostgreSQL and Redis servers of its log lines as host:port, an IPv6 address in brackets', () => {
    expect(postgresServer('postgresql://u@[::1]:5433/db')).toBe('[::1]:5433');
    expect(postgresServer('postgresql://u@db.internal:5433/db')).toBe('db.internal:5433');
    expect(postgresServer('postgresql://u@/db?host=/var/run/postgresql')).toBe('/var/run/postgresql (Unix socket)');
    expect(redisServer(new Redis('redis://[::1]:6390/2', { lazyConnect: true }))).toBe('[::1]:6390');
    expect(redisServer(new Redis('redis://cache.internal:6390', { lazyConnect: true }))).toBe('cache.internal:6390');
  });
  it('refuses a DATABASE_URL pg could not read as a settings error, before anything opens it', () => {
    expect(() => loadSettings({ DATABASE_URL: 'postgresql://[bad' })).toThrow(SettingsError);
    expect(() => loadSettings({ DATABASE_URL: 'postgresql://[bad' })).toThrow(/DATABASE_URL: not a valid PostgreSQL URL/);
    expect(() => loadSettings({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL: must start with file: or postgres/);
    expect(() => loadSettings({ DATABASE_URL: 'postgres://u@h/db?schema=a;drop' })).toThrow(/DATABASE_URL: schema "a;drop"/);
    // libpq's failover URLs, which pg cannot read ("Invalid URL", or a socket path with a comma).
    const several = /DATABASE_URL: names several hosts \((.+)\), as libpq's failover URLs do, but the driver connects to one/;
    expect(() => loadSettings({ DATABASE_URL: 'postgresql://u:p@db1:5432,db2:5433/app' })).toThrow(several);
    expect(() => loadSettings({ DATABASE_URL: 'postgresql://u:p@db1:5432,db2:5433/app' })).toThrow('(db1:5432,db2:5433)');
    expect(() => loadSettings({ DATABASE_URL: 'postgresql://u@/app?host=/run/a,/run/b&schema=s' })).toThrow('(/run/a,/run/b)');
    expect(loadSettings({ DATABASE_URL: 'postgresql://u%2Cv:p%2Cq@db1:5432/app' }).databaseUrl).toContain('db1');
  });
});
