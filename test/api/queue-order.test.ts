// The order jobs leave the queue in, with several API keys (real Redis, no worker: Bull's
// getWaiting lists the wait list in the order its workers pop it). One key's backlog must not hold up another key's
// first job, and each key's own jobs keep the order they were posted in.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore } from '../../src/auth/key-store.js';
import { JobQueuePlace, JobView } from '../../src/jobs/job-view.js';
import { WorkerBeacon } from '../../src/queue/worker-registry.js';
import { noteLacking } from '../../src/queue/dataset-holders.js';
import { openTrainingQueue, type TrainingQueue } from '../../src/queue/training-queue.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from './api-harness.js';

describe('queue order across API keys', () => {
  let h: Harness;
  let queue: TrainingQueue;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    h = await startHarness('sqlite', { RATE_LIMIT_PER_MINUTE: '0' });
    await waitReady(h);
    const store = new KeyStore(h.deps.db.prisma);
    for (const name of ['alice', 'bob', 'carol']) keys[name] = (await store.create(name, 'train')).key;
    h.app.auth.forget();
    queue = openTrainingQueue(h.settings);
  });
  afterAll(async () => {
    await queue?.close();
    await h?.close();
  });

  const post = async (key: string, name: string) => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/jobs', headers: { authorization: `Bearer ${keys[key]}` }, payload: { ...tinySynthetic, name } });
    expect(res.statusCode, res.body).toBe(201);
    return JobView.parse(res.json()).id;
  };
  /** Job names in the order workers will take them. */
  const nextOut = async () => {
    const waiting = await queue.getWaiting(0, -1);
    const names = new Map<string, string>();
    for (const j of await h.deps.db.prisma.trainingJob.findMany({ select: { id: true, name: true } })) names.set(j.id, j.name);
    return waiting.map((j) => names.get(j.data.jobId));
  };

  it("puts another key's first job ahead of one key's backlog", async () => {
    await post('alice', 'a1');
    await post('alice', 'a2');
    await post('alice', 'a3');
    await post('bob', 'b1');
    expect(await nextOut()).toEqual(['a1', 'b1', 'a2', 'a3']);
    await post('bob', 'b2');
    expect(await nextOut()).toEqual(['a1', 'b1', 'a2', 'b2', 'a3']);
  });

  it('tells a queued job its place: the jobs ahead of it and the workers by state, away ones included', async () => {
    const place = async (id: string) => {
      const res = await h.app.inject({ method: 'GET', url: `/v1/jobs/${id}/queue`, headers: { authorization: `Bearer ${keys.bob}` } });
      expect(res.statusCode, res.body).toBe(200);
      return JobQueuePlace.parse(res.json());
    };
    const ids = new Map((await h.deps.db.prisma.trainingJob.findMany({ select: { id: true, name: true } })).map((j) => [j.name, j.id]));
    const out = await nextOut();
    for (const [i, name] of out.entries()) expect((await place(ids.get(name!)!)).position, name).toBe(i);
    expect(await place(ids.get('a3')!)).toEqual({
      status: 'queued',
      position: 4,
      workers: { idle: 0, training: 0, waitingForDisk: 0, away: 0 },
      withoutFolder: 0,
    });

    // A worker says it is there (as `qatserve worker` does through its Redis entry).
    const beacon = new WorkerBeacon(h.deps.redis, h.settings.queuePrefix, { dataDir: h.dir, dataRoot: h.dir, trainThreads: 1 });
    beacon.start();
    beacon.set('waiting-for-disk', { reason: 'short' });
    await expect.poll(async () => (await place(ids.get('a1')!)).workers).toEqual({ idle: 0, training: 0, waitingForDisk: 1, away: 0 });
    // It took a1 and lacks its image folder, as did a worker never heard from: only the one listed counts.
    await noteLacking(h.deps.redis, h.settings.queuePrefix, ids.get('a1')!, 'gone-host:1');
    await noteLacking(h.deps.redis, h.settings.queuePrefix, ids.get('a1')!, beacon.id);
    expect((await place(ids.get('a1')!)).withoutFolder).toBe(1);
    expect((await place(ids.get('a2')!)).withoutFolder).toBe(0);
    // Stopped (as for a restart), it is away: it still counts until WORKER_RESTART_GRACE_S has passed.
    await beacon.stop();
    expect(await place(ids.get('a1')!)).toMatchObject({ workers: { idle: 0, training: 0, waitingForDisk: 0, away: 1 }, withoutFolder: 1 });
    const metrics = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain('qatserve_workers{state="waiting-for-disk"} 0');
    expect(metrics).toContain('qatserve_workers{state="away"} 1');

    const cancelled = await h.app.inject({ method: 'POST', url: `/v1/jobs/${ids.get('b2')}/cancel`, headers: { authorization: `Bearer ${keys.bob}` } });
    expect(cancelled.statusCode).toBe(200);
    expect(await place(ids.get('b2')!)).toMatchObject({ status: 'cancelled', position: null });
    expect((await place(ids.get('a3')!)).position).toBe(3);
    const unknown = await h.app.inject({ method: 'GET', url: '/v1/jobs/nope/queue', headers: { authorization: `Bearer ${keys.bob}` } });
    expect(unknown.statusCode).toBe(404);
  });

  it("keeps a key's own jobs in the order posted after some of them left the queue", async () => {
    const c1 = await post('carol', 'c1');
    const c2 = await post('carol', 'c2');
    await post('carol', 'c3');
    for (const id of [c1, c2])
      expect((await h.app.inject({ method: 'POST', url: `/v1/jobs/${id}/cancel`, headers: { authorization: `Bearer ${keys.carol}` } })).statusCode).toBe(200);
    // c3 went in third in line for carol; c4, with one of carol's jobs queued, must not pass it.
    await post('carol', 'c4');
    const order = (await nextOut()).filter((n) => n!.startsWith('c'));
    expect(order).toEqual(['c3', 'c4']);
  });
});
