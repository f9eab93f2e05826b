// GET /v1/jobs/:id/events across two API replicas on one database and one real Redis: a write
// made through replica A (or by a worker, which only publishes to Redis) reaches a stream opened
// on replica B; Last-Event-ID resumes with nothing missed or repeated; heartbeats on a quiet
// stream; the stream ends with the job.
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.js';
import { openApiDeps, type OpenedDeps } from '../../src/api/api-deps.js';
import { claim, type JobOwner } from '../../src/jobs/job-lifecycle.js';
import { JobEventProgressData, JobEventStatusData, JobEventWarningData, JobView, JobWarnings, MetricPointView } from '../../src/jobs/job-view.js';
import { jobEventPublisher, jobEventsChannel } from '../../src/queue/job-event-bus.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from './api-harness.js';

const DATASET = { description: 'synthetic 64 train / 16 val', classes: 2, classNames: ['a', 'b'], trainImages: 64, valImages: 16 };
import { openSse, type SseEvent } from './sse-client.js';

describe('job events over SSE across replicas', () => {
  let a: Harness;
  let bDeps: OpenedDeps;
  let bApp: Awaited<ReturnType<typeof buildApp>>;
  let baseA: string;
  let baseB: string;
  let redis: Redis;

  beforeAll(async () => {
    a = await startHarness('sqlite');
    await waitReady(a);
    // Replica B: the same database and queue prefix, its own process state and Redis connections.
    const settingsB = { ...a.settings, limits: { ...a.settings.limits, sseHeartbeatMs: 300 } };
    bDeps = openApiDeps(settingsB, false);
    bApp = await buildApp(bDeps);
    await a.app.listen({ host: '127.0.0.1', port: 0 });
    await bApp.listen({ host: '127.0.0.1', port: 0 });
    baseA = `http://127.0.0.1:${(a.app.server.address() as AddressInfo).port}`;
    baseB = `http://127.0.0.1:${(bApp.server.address() as AddressInfo).port}`;
    redis = new Redis(a.settings.redisUrl);
  });
  afterAll(async () => {
    await bApp?.close();
    await bDeps?.close();
    await a?.close();
    redis?.disconnect();
  });

  const createOnA = async () => {
    const res = await fetch(`${baseA}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(tinySynthetic) });
    expect(res.status).toBe(201);
    return JobView.parse(await res.json());
  };
  /** A worker: the lifecycle's writes, waking streams through Redis like `qatserve worker` does. */
  const workerClaims = async (id: string): Promise<JobOwner> => {
    const c = await claim(a.deps.db.prisma, id, jobEventPublisher(redis, a.settings.queuePrefix));
    if (c.kind !== 'claimed') throw new Error(`not claimed: ${c.kind}`);
    return c.owner;
  };
  const statuses = (events: SseEvent[]) => events.filter((e) => e.type === 'status').map((e) => JobEventStatusData.parse(e.data).status);

  it("a write through replica A reaches a stream on replica B; the worker's steps and scores too; the stream ends with the job", async () => {
    const onChannel: string[] = [];
    const sub = new Redis(a.settings.redisUrl);
    await sub.subscribe(jobEventsChannel(a.settings.queuePrefix));
    sub.on('message', (_c, id: string) => onChannel.push(id));
    const job = await createOnA();

    const stream = await openSse(`${baseB}/v1/jobs/${job.id}/events`);
    expect(stream.status).toBe(200);
    await stream.until((es) => statuses(es).includes('queued'));
    const owner = await workerClaims(job.id);
    await owner.start({ backend: 'wasm', totalSteps: 3, startStep: 0, dataset: DATASET });
    await owner.step({ step: 1, epoch: 1, loss: 1.5, learningRate: 0.1, imagesPerSecond: 20 });
    await owner.evaluated({ step: 1, epoch: 1, top1: 0.5, top5: 1, floatTop1: 0.55 });
    await owner.warning({ code: 'IMAGE_UNREADABLE', message: 'skipped cats/7.jpg: corrupt header' });
    await stream.until((es) => es.some((e) => e.type === 'warning'));
    // The cancel goes through replica A's HTTP API; B's stream hears it.
    const cancel = await fetch(`${baseA}/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(200);
    await stream.until((es) => statuses(es).includes('cancelling'));
    await owner.stop('cancel');
    await stream.ended;

    expect(statuses(stream.events)).toEqual(['queued', 'running', 'cancelling', 'cancelled']);
    const metric = MetricPointView.parse(stream.events.find((e) => e.type === 'metric')!.data);
    expect(metric).toMatchObject({ step: 1, loss: 1.5, learningRate: 0.1, top1: null });
    expect(MetricPointView.parse(stream.events.find((e) => e.type === 'evaluation')!.data)).toMatchObject({ step: 1, top1: 0.5, floatTop1: 0.55 });
    expect(JobEventProgressData.parse(stream.events.find((e) => e.type === 'progress')!.data)).toMatchObject({ step: 0, totalSteps: 3, backend: 'wasm' });
    const warning = { code: 'IMAGE_UNREADABLE', message: 'skipped cats/7.jpg: corrupt header' };
    expect(JobEventWarningData.parse(stream.events.find((e) => e.type === 'warning')!.data)).toEqual(warning);
    // The job counts it, and says it in words on either replica.
    const said = JobWarnings.parse(await (await fetch(`${baseB}/v1/jobs/${job.id}/warnings`)).json());
    expect(said).toMatchObject({ total: 1, warnings: [warning] });
    expect(((await (await fetch(`${baseA}/v1/jobs/${job.id}`)).json()) as { warnings: number }).warnings).toBe(1);
    expect((await fetch(`${baseA}/v1/jobs/nope/warnings`)).status).toBe(404);
    // Exactly the rows of the database, in order: nothing from process memory.
    const rows = await a.deps.db.prisma.jobEvent.findMany({ where: { jobId: job.id }, orderBy: { id: 'asc' } });
    expect(stream.events.map((e) => [e.id, e.type])).toEqual(rows.map((r) => [r.id, r.type]));
    // Every write woke the replicas through Redis (A's create and cancel included), not only B's poll:
    // create, claim, start, step, evaluated, warning, cancel, stop.
    await expect.poll(() => onChannel.filter((id) => id === job.id).length).toBeGreaterThanOrEqual(8);
    sub.disconnect();
  });

  it('resumes with Last-Event-ID on the other replica: no gaps, no duplicates', async () => {
    const job = await createOnA();
    const owner = await workerClaims(job.id);
    await owner.start({ backend: 'wasm', totalSteps: 10, startStep: 0, dataset: DATASET });
    const first = await openSse(`${baseA}/v1/jobs/${job.id}/events`);
    for (let s = 1; s <= 3; s++) await owner.step({ step: s, epoch: 1, loss: 2 - s / 10, learningRate: 0.1, imagesPerSecond: 20 });
    await first.until((es) => es.filter((e) => e.type === 'metric').length === 3);
    first.close();
    const lastSeen = first.events.at(-1)!.id;
    // Written while no stream was open.
    for (let s = 4; s <= 6; s++) await owner.step({ step: s, epoch: 1, loss: 2 - s / 10, learningRate: 0.1, imagesPerSecond: 20 });
    const second = await openSse(`${baseB}/v1/jobs/${job.id}/events`, { 'last-event-id': String(lastSeen) });
    await owner.evaluated({ step: 6, epoch: 1, top1: 0.25, top5: 0.75 });
    await owner.fail('TEST_FAILURE', 'ended by the test');
    await second.ended;
    const all = [...first.events, ...second.events];
    const rows = await a.deps.db.prisma.jobEvent.findMany({ where: { jobId: job.id }, orderBy: { id: 'asc' } });
    expect(all.map((e) => e.id)).toEqual(rows.map((r) => r.id));
    expect(second.events[0].id).toBeGreaterThan(lastSeen);
    expect(JobEventStatusData.parse(second.events.at(-1)!.data)).toEqual({ status: 'failed', error: { code: 'TEST_FAILURE', message: 'ended by the test' } });
    // Asked again after the end: the events after the given id, then the stream ends at once.
    const replay = await openSse(`${baseB}/v1/jobs/${job.id}/events`, { 'last-event-id': String(rows.at(-2)!.id) });
    await replay.ended;
    expect(replay.events.map((e) => e.id)).toEqual([rows.at(-1)!.id]);
  });

  it('sends heartbeat comments on a quiet stream', async () => {
    const job = await createOnA();
    const stream = await openSse(`${baseB}/v1/jobs/${job.id}/events`);
    await expect.poll(() => stream.comments.filter((c) => c === 'heartbeat').length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    expect(stream.events.map((e) => e.type)).toEqual(['status']);
    stream.close();
  });

  it('answers 404 for an unknown job and 400 for a Last-Event-ID that is not an event id', async () => {
    const missing = await fetch(`${baseB}/v1/jobs/no-such-job/events`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('JOB_NOT_FOUND');
    const job = await createOnA();
    const bad = await fetch(`${baseB}/v1/jobs/${job.id}/events`, { headers: { 'last-event-id': 'abc' } });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatchObject({ code: 'LAST_EVENT_ID_INVALID', issues: [{ path: 'headers.last-event-id' }] });
  });
});
