// The streams of one job read the database together (JobEventHub.shared): a write's wake-up and the
// job's poll each cost one read however many caught-up streams follow the job, and a read that
// began before a wake-up never answers a stream that wake-up woke.
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobEventHub, jobEventRoutes, StreamSlots } from '../../src/api/routes/job-events.js';
import type { JobService } from '../../src/jobs/job-service.js';
import { openSse, type SseStream } from './sse-client.js';

/** A job's event log in memory, counting reads, as JobService.eventsSince answers them. */
function eventLog() {
  const events: { id: number; type: string; data: string }[] = [];
  const log = {
    reads: 0,
    finished: false,
    append(step: number) {
      events.push({ id: events.length + 1, type: 'progress', data: JSON.stringify({ step, epoch: 0 }) });
    },
    jobs: {
      eventsSince: async (_id: string, afterId: number, limit: number) => {
        log.reads++;
        await new Promise((r) => setTimeout(r, 5));
        return { finished: log.finished, events: events.filter((e) => e.id > afterId).slice(0, limit) };
      },
    } as unknown as JobService,
  };
  return log;
}

describe('job event streams share their reads', () => {
  const POLL_MS = 200;
  const STREAMS = 20;
  const log = eventLog();
  const hub = new JobEventHub(POLL_MS);
  let app: FastifyInstance;
  let streams: SseStream[];

  beforeAll(async () => {
    log.append(1);
    app = Fastify();
    await app.register(jobEventRoutes, { jobs: log.jobs, hub, heartbeatMs: 60_000, slots: new StreamSlots(0, 0) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/jobs/job-1/events`;
    streams = await Promise.all(Array.from({ length: STREAMS }, () => openSse(url)));
    await Promise.all(streams.map((s) => s.until((es) => es.length === 1)));
  });
  afterAll(async () => {
    for (const s of streams ?? []) s.close();
    await app?.close();
    await hub.close();
  });

  it('one read per write for all the caught-up streams of the job, each event sent to every stream once', async () => {
    for (let step = 2; step <= 6; step++) {
      const before = log.reads;
      log.append(step);
      hub.wake('job-1');
      await Promise.all(streams.map((s) => s.until((es) => es.length === step)));
      // A poll may fall in the same window: at most one read for it too.
      expect(log.reads - before).toBeLessThanOrEqual(2);
    }
    for (const s of streams) expect(s.events.map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('polls once per interval for the job, not once per stream', async () => {
    const before = log.reads;
    await new Promise((r) => setTimeout(r, POLL_MS * 10));
    // 20 streams polling on their own would read about 200 times.
    expect(log.reads - before).toBeGreaterThanOrEqual(5);
    expect(log.reads - before).toBeLessThanOrEqual(15);
  });

  it('a read that began before a wake-up is not shared with the streams that wake-up woke', async () => {
    const h = new JobEventHub(60_000);
    const off = h.listen('job-2', () => {});
    const answer: (() => void)[] = [];
    let runs = 0;
    const read = () => {
      const n = ++runs;
      return new Promise<number>((r) => answer.push(() => r(n)));
    };
    const first = h.shared('job-2', 7, read);
    const joined = h.shared('job-2', 7, read); // no wake-up since `first` began: the same read
    h.wake('job-2');
    const woken = h.shared('job-2', 7, read); // a write was announced since: a read of its own
    const otherIds = h.shared('job-2', 9, read);
    answer.forEach((f) => f());
    expect(await Promise.all([first, joined, woken, otherIds])).toEqual([1, 1, 2, 3]);
    off();
    await h.close();
  });
});

describe('a long history', () => {
  it('is replayed with the event loop turning between reads, so other requests are not held', async () => {
    const events = Array.from({ length: 2000 }, (_, i) => ({ id: i + 1, type: 'metric', data: JSON.stringify({ step: i + 1, loss: 1 }) }));
    let reads = 0;
    let readsBeforeTimer: number | undefined;
    // As on SQLite, every read answers at once; a timer set at the first one stands for a request
    // waiting on the event loop.
    const jobs = {
      eventsSince: async (_id: string, afterId: number, limit: number) => {
        if (reads++ === 0) setImmediate(() => (readsBeforeTimer = reads));
        return { finished: true, events: events.filter((e) => e.id > afterId).slice(0, limit) };
      },
    } as unknown as JobService;
    const hub = new JobEventHub(60_000);
    const app = Fastify();
    await app.register(jobEventRoutes, { jobs, hub, heartbeatMs: 60_000, slots: new StreamSlots(0, 0) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const stream = await openSse(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/jobs/job-3/events`);
      await stream.until((es) => es.length === events.length);
      expect(stream.events.map((e) => e.id)).toEqual(events.map((e) => e.id));
      expect(reads).toBeGreaterThanOrEqual(10);
      // The waiting timer ran after the first read's events went out, not after all ten reads.
      expect(readsBeforeTimer).toBe(1);
      stream.close();
    } finally {
      await app.close();
      await hub.close();
    }
  });
});
