// Workers' entries in Redis (real Redis): what GET /v1/workers and /metrics list.
import { Redis } from 'ioredis';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listWorkers, WorkerBeacon, WORKER_TTL_S } from '../../src/queue/worker-registry.js';

describe('worker registry', () => {
  let redis: Redis;
  const prefix = `qs-test-workers-${process.pid}-${Date.now().toString(36)}`;

  beforeAll(() => {
    redis = new Redis('redis://127.0.0.1:6379');
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(keys);
    redis.disconnect();
  });

  it('lists a worker with its state, job and reason until it stops; its entry expires if it dies', async () => {
    const beacon = new WorkerBeacon(redis, prefix, { dataDir: os.tmpdir(), trainThreads: 2 });
    expect(await listWorkers(redis, prefix)).toEqual([]);
    beacon.start();
    await expect.poll(() => listWorkers(redis, prefix)).toHaveLength(1);
    const [idle] = await listWorkers(redis, prefix);
    expect(idle).toMatchObject({ id: `${os.hostname()}:${process.pid}`, pid: process.pid, state: 'idle', jobId: null, reason: null, trainThreads: 2 });
    expect(idle.disk.totalBytes).toBeGreaterThan(idle.disk.freeBytes);

    beacon.set('training', { jobId: 'job-1' });
    await expect.poll(async () => (await listWorkers(redis, prefix))[0]?.state).toBe('training');
    expect((await listWorkers(redis, prefix))[0]).toMatchObject({ jobId: 'job-1', reason: null });
    beacon.set('waiting-for-disk', { reason: 'short of disk' });
    await expect.poll(async () => (await listWorkers(redis, prefix))[0]?.state).toBe('waiting-for-disk');
    expect((await listWorkers(redis, prefix))[0]).toMatchObject({ jobId: null, reason: 'short of disk' });

    // A worker killed with no chance to say so drops out by itself.
    const ttl = await redis.ttl(`${prefix}:workers:${os.hostname()}:${process.pid}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(WORKER_TTL_S);

    await beacon.stop();
    expect(await listWorkers(redis, prefix)).toEqual([]);
    beacon.set('idle'); // a late change after the stop writes nothing
    await new Promise((r) => setTimeout(r, 100));
    expect(await listWorkers(redis, prefix)).toEqual([]);
  });

  it("lists only its deployment's workers, whatever its prefix holds, and skips entries it cannot read", async () => {
    const globby = `${prefix}-a*b`;
    const beacon = new WorkerBeacon(redis, globby, { dataDir: os.tmpdir(), trainThreads: 1 });
    beacon.start();
    const other = new WorkerBeacon(redis, `${prefix}-aXb`, { dataDir: os.tmpdir(), trainThreads: 1 });
    other.start();
    await redis.set(`${globby}:workers:broken`, '{not json', 'EX', 20);
    await redis.set(`${globby}:workers:foreign`, JSON.stringify({ id: 'x' }), 'EX', 20);
    await expect.poll(async () => (await listWorkers(redis, `${prefix}-aXb`)).length).toBe(1);
    await expect.poll(async () => (await listWorkers(redis, globby)).length).toBe(1);
    expect((await listWorkers(redis, globby))[0].trainThreads).toBe(1);
    await beacon.stop();
    await other.stop();
  });
});
