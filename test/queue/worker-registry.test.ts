// Workers' entries in Redis (real Redis): what GET /v1/workers and /metrics list.
import { Redis } from 'ioredis';
import os from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { listFleet, redisClock, WorkerBeacon, WORKER_TTL_S, writeEntry, type WorkerView } from '../../src/queue/worker-registry.js';

/** The live workers (listFleet with no grace period). */
const listWorkers = async (redis: Redis, prefix: string) => (await listFleet(redis, prefix, 0)).live;

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
    const beacon = new WorkerBeacon(redis, prefix, { dataDir: os.tmpdir(), dataRoot: os.tmpdir(), trainThreads: 2 });
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
    const beacon = new WorkerBeacon(redis, globby, { dataDir: os.tmpdir(), dataRoot: os.tmpdir(), trainThreads: 1 });
    beacon.start();
    const other = new WorkerBeacon(redis, `${prefix}-aXb`, { dataDir: os.tmpdir(), dataRoot: os.tmpdir(), trainThreads: 1 });
    other.start();
    // Entries it cannot read, listed in its index as a worker's would be.
    await redis.set(`${globby}:workers:broken`, '{not json', 'EX', 20);
    await redis.set(`${globby}:workers:foreign`, JSON.stringify({ id: 'x' }), 'EX', 20);
    await redis.zadd(`${globby}:workers-index`, Date.now(), 'broken', Date.now(), 'foreign');
    await expect.poll(async () => (await listWorkers(redis, `${prefix}-aXb`)).length).toBe(1);
    await expect.poll(async () => (await listWorkers(redis, globby)).length).toBe(1);
    expect((await listWorkers(redis, globby))[0].trainThreads).toBe(1);
    await beacon.stop();
    await other.stop();
  });

  it('counts a worker that stopped (a restart) as away for the grace period, unless a live worker has taken its seat', async () => {
    const fleetPrefix = `${prefix}-fleet`;
    const beacon = new WorkerBeacon(redis, fleetPrefix, { dataDir: os.tmpdir(), dataRoot: '/srv/datasets', trainThreads: 1, memoryBudgetBytes: 2 ** 30 });
    beacon.start();
    await expect.poll(async () => (await listWorkers(redis, fleetPrefix)).length).toBe(1);
    const [live] = await listWorkers(redis, fleetPrefix);
    expect(live.seat).toMatch(/^[0-9a-f]{16}$/);
    // Two earlier workers, as their last entries: one on this machine and DATA_ROOT (this worker
    // before a restart), one elsewhere.
    const earlier = (id: string, seat: string): WorkerView => ({ ...live, id, pid: 1, seat, seenAt: new Date().toISOString() });
    for (const w of [earlier('before-restart:1', live.seat!), earlier('other-machine:1', 'elsewhere')]) await writeEntry(redis, fleetPrefix, w, false);
    const ids = (ws: WorkerView[]) => ws.map((w) => w.id);
    const fleet = await listFleet(redis, fleetPrefix, 600_000);
    expect([ids(fleet.live), ids(fleet.away)]).toEqual([[beacon.id], ['other-machine:1']]);

    await beacon.stop();
    const stopped = await listFleet(redis, fleetPrefix, 600_000);
    expect(stopped.live).toEqual([]);
    expect(ids(stopped.away).sort()).toEqual(['before-restart:1', beacon.id, 'other-machine:1'].sort());
    expect(stopped.away.find((w) => w.id === beacon.id)?.memoryBudgetBytes).toBe(2 ** 30);
    // Once the grace period is over, or with none, only live workers count.
    expect((await listFleet(redis, fleetPrefix, 600_000, Date.now() + 601_000)).away).toEqual([]);
    expect((await listFleet(redis, fleetPrefix, 0)).away).toEqual([]);
  });

  describe('on a machine whose clock is off', () => {
    afterEach(() => vi.useRealTimers());
    /** A beacon whose machine's clock is `skewMs` off, once it has written its entry; the clock here is right again. */
    const skewedBeacon = async (fleetPrefix: string, skewMs: number) => {
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + skewMs });
      const beacon = new WorkerBeacon(redis, fleetPrefix, { dataDir: os.tmpdir(), dataRoot: os.tmpdir(), trainThreads: 1 });
      beacon.start();
      await expect.poll(() => redis.exists(`${fleetPrefix}:workers:${beacon.id}`)).toBe(1);
      vi.useRealTimers();
      return beacon;
    };

    it('lists a worker whose clock runs 10 minutes behind, with its times on Redis', async () => {
      const fleetPrefix = `${prefix}-behind`;
      const beacon = await skewedBeacon(fleetPrefix, -600_000);
      const [worker] = await listWorkers(redis, fleetPrefix);
      expect(worker?.id).toBe(beacon.id);
      const now = await redisClock(redis);
      for (const at of [worker.seenAt, worker.since, worker.startedAt]) expect(Math.abs(Date.parse(at) - now)).toBeLessThan(10_000);
      await beacon.stop();
    });

    it('counts a worker whose clock runs 10 minutes ahead as away for the grace period only', async () => {
      const fleetPrefix = `${prefix}-ahead`;
      const beacon = await skewedBeacon(fleetPrefix, 600_000);
      await beacon.stop();
      expect((await listFleet(redis, fleetPrefix, 60_000)).away.map((w) => w.id)).toEqual([beacon.id]);
      expect((await listFleet(redis, fleetPrefix, 60_000, (await redisClock(redis)) + 61_000)).away).toEqual([]);
    });
  });
});
