// GET /v1/jobs/:id/events: a job's events as Server-Sent Events (`train` scope, like the other
// job routes). The events are JobEvent rows (src/jobs/job-events.ts), so any API replica can serve
// any job's stream: a Redis pub/sub message wakes the streams of that job at once, and a slow poll
// of the database covers a lost message or a Redis outage.
//
// Streams are admitted (StreamSlots): each lasts as long as its job and reads the database on every
// write of the job and every poll, so a rate limit alone would let one key hold hundreds open. The
// streams of one job read together (JobEventHub.shared): one query serves all that are caught up.
//
// Event ids are JobEvent ids. One job's events commit in id order (each is written after its
// write locked the job's row), so resuming with Last-Event-ID: N — reading ids above N — sends
// every later event once. The stream ends after the event that finishes the job; asked for a job
// already finished, it sends what follows Last-Event-ID and ends. It also ends once its key no
// longer has access (revoked: within a poll on this replica, KEY_CACHE_MS more elsewhere), where
// until the fortieth session a revoked key's stream ran on as long as its job.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { JobService } from '../../jobs/job-service.js';
import { DB_INT_MAX, JobIdParams } from '../../jobs/job-view.js';
import { subscribeJobEvents, type JobEventSubscription } from '../../queue/job-event-bus.js';
import { ServiceError, ValidationError } from '../../jobs/job-errors.js';
import { parseRequest } from '../validate.js';
import { accessHolds } from '../plugins/auth.js';
import { rateLimitKey } from '../plugins/rate-limit.js';
import { CappedCounts } from '../capped-counts.js';

/** How often a stream reads the database when no wake-up came (a lost message, Redis away). */
export const EVENTS_POLL_MS = 2000;
/** Events read per query; a stream behind by more reads again at once. */
const BATCH = 200;
/** What a browser's EventSource waits before reconnecting. */
const RETRY_MS = 2000;

const LastEventId = z
  .string()
  .regex(/^\d{1,10}$/, 'expected the id of an event this stream sent (a non-negative integer)')
  .refine((s) => Number(s) <= DB_INT_MAX, 'expected the id of an event this stream sent (event ids are at most 2147483647)');

/** Seconds a refused client is told to wait: about a dashboard's reconnect, long enough not to hammer. */
const STREAM_RETRY_AFTER_S = 5;

export class TooManyStreamsError extends ServiceError {
  readonly retryAfterSeconds = STREAM_RETRY_AFTER_S;
  constructor(max: number) {
    super(429, 'TOO_MANY_STREAMS', `this client already has ${max} job event streams open (SSE_MAX_STREAMS_PER_CLIENT); close one first`);
    this.name = 'TooManyStreamsError';
  }
}

export class StreamsFullError extends ServiceError {
  readonly retryAfterSeconds = STREAM_RETRY_AFTER_S;
  constructor(max: number) {
    super(503, 'STREAMS_FULL', `this server already holds ${max} job event streams (SSE_MAX_STREAMS); retry shortly or poll GET /v1/jobs/:id`);
    this.name = 'StreamsFullError';
  }
}

/** The streams open in this process, per client and in all; a cap of 0 is no cap. */
export class StreamSlots {
  private readonly counts: CappedCounts;

  constructor(perClient: number, max: number) {
    this.counts = new CappedCounts(perClient, max);
  }

  /** Takes a slot for `client` or throws; the returned function gives it back (once). */
  take(client: string): () => void {
    const taken = this.counts.take(client);
    if (taken === 'total') throw new StreamsFullError(this.counts.max);
    if (taken === 'client') throw new TooManyStreamsError(this.counts.perClient);
    return taken;
  }

  get open(): number {
    return this.counts.open;
  }
}

interface JobStreams {
  listeners: Set<() => void>;
  /** Wake-ups so far: a read started at this generation has seen every write announced before it. */
  generation: number;
  /** The slow poll, one per job however many streams follow it. */
  poll: NodeJS.Timeout;
  /** Reads in flight by `afterId`, each with the generation it started at. */
  reads: Map<number, { generation: number; result: Promise<unknown> }>;
}

/**
 * Wake-ups by job id, for the streams open in this process, and the reads they share. A write
 * wakes every stream of its job at once, and caught-up streams all ask for the same ids: one
 * database read answers them all (`shared`), where each stream used to read for itself (200 streams
 * of one job: 200 queries a write, and 100 a second polling). The slow poll is the job's, so its
 * streams read together too.
 */
export class JobEventHub {
  private readonly jobs = new Map<string, JobStreams>();
  private subscription: JobEventSubscription | null = null;

  constructor(private readonly pollMs = EVENTS_POLL_MS) {}

  start(redisUrl: string, prefix: string, timeoutMs: number): void {
    this.subscription ??= subscribeJobEvents(redisUrl, prefix, (jobId) => this.wake(jobId), timeoutMs);
  }

  wake(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (!job) return;
    job.generation++;
    for (const fn of job.listeners) fn();
  }

  listen(jobId: string, fn: () => void): () => void {
    let job = this.jobs.get(jobId);
    if (!job) {
      const poll = setInterval(() => this.wake(jobId), this.pollMs);
      poll.unref();
      job = { listeners: new Set(), generation: 0, poll, reads: new Map() };
      this.jobs.set(jobId, job);
    }
    const entry = job;
    entry.listeners.add(fn);
    return () => {
      entry.listeners.delete(fn);
      if (entry.listeners.size === 0 && this.jobs.get(jobId) === entry) {
        clearInterval(entry.poll);
        this.jobs.delete(jobId);
      }
    };
  }

  /**
   * `read()` of the job's events after `afterId`, shared with the streams that ask for the same
   * ids while it runs, if no wake-up came since it started: a write announced after a read began
   * may be missing from it, so a stream woken by that write reads again. (A write whose wake-up
   * is still on its way is missed alike by a read of one's own; its wake-up triggers the next.)
   * Only for a job with a listener.
   */
  shared<T>(jobId: string, afterId: number, read: () => Promise<T>): Promise<T> {
    const job = this.jobs.get(jobId);
    if (!job) return read();
    const inFlight = job.reads.get(afterId);
    if (inFlight && inFlight.generation === job.generation) return inFlight.result as Promise<T>;
    const result = read();
    const entry = { generation: job.generation, result };
    job.reads.set(afterId, entry);
    const done = () => {
      if (job.reads.get(afterId) === entry) job.reads.delete(afterId);
    };
    result.then(done, done);
    return result;
  }

  async close(): Promise<void> {
    for (const job of this.jobs.values()) clearInterval(job.poll);
    await this.subscription?.close();
    this.subscription = null;
  }
}

/** One SSE frame. `data` is JSON text (no newlines: JSON.stringify never writes raw ones). */
export function sseFrame(e: { id: number; type: string; data: string }): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${e.data}\n\n`;
}

function write(reply: FastifyReply, chunk: string): Promise<void> {
  if (reply.raw.write(chunk)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      reply.raw.off('drain', done);
      reply.raw.off('close', done);
      resolve();
    };
    reply.raw.on('drain', done);
    reply.raw.on('close', done);
  });
}

export async function jobEventRoutes(app: FastifyInstance, opts: { jobs: JobService; hub: JobEventHub; heartbeatMs: number; slots: StreamSlots }) {
  const { jobs, hub, heartbeatMs, slots } = opts;
  const open = new Set<() => void>();
  // Streams last as long as their job: end them when the server closes, or close() would wait.
  app.addHook('preClose', async () => {
    for (const end of open) end();
  });

  app.get('/v1/jobs/:id/events', { config: { access: 'train' as const } }, async (req, reply) => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    const header = req.headers['last-event-id'];
    let lastId = 0;
    if (header !== undefined) {
      const parsed = LastEventId.safeParse(Array.isArray(header) ? header.join(',') : header.trim());
      if (!parsed.success) {
        throw new ValidationError('LAST_EVENT_ID_INVALID', 'the Last-Event-ID header must be the id of an event this stream sent', [
          { path: 'headers.last-event-id', message: parsed.error.issues[0]?.message ?? 'invalid' },
        ]);
      }
      lastId = Number(parsed.data);
    }
    let closed = false;
    let pending = false;
    let resolveWait: (() => void) | null = null;
    const nudge = () => {
      pending = true;
      resolveWait?.();
    };
    const end = () => {
      closed = true;
      resolveWait?.();
    };
    // Taken before any database read, and synchronously: concurrent requests cannot all pass.
    const release = slots.take(rateLimitKey(req));
    // Listening before the first read: a wake-up between the two is not lost.
    const unlisten = hub.listen(id, nudge);
    const read = () => hub.shared(id, lastId, () => jobs.eventsSince(id, lastId, BATCH));
    let batch;
    try {
      // 404 before the stream starts, while an error can still be a normal response.
      batch = await read();
    } catch (err) {
      unlisten();
      release();
      throw err;
    }
    open.add(end);
    reply.raw.on('close', end);

    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // nginx buffers responses unless told not to.
      'x-accel-buffering': 'no',
      'x-request-id': req.id,
    });
    try {
      await write(reply, `retry: ${RETRY_MS}\n\n`);
      let lastSent = Date.now();
      while (!closed) {
        // Each turn (a write's wake-up, the 2 s poll, a heartbeat, a replayed batch): the key that
        // opened the stream must still have access. Ended, the client's reconnect gets the 401.
        if (!(await accessHolds(app.auth, req))) {
          req.log.info({ jobId: id }, 'job event stream ended: its API key no longer has access (revoked, or auth turned on)');
          break;
        }
        const last = batch.events.at(-1);
        if (last) {
          await write(reply, batch.events.map(sseFrame).join(''));
          lastId = last.id;
          lastSent = Date.now();
        }
        if (batch.events.length === BATCH) {
          // A long job's history is thousands of batches, and on SQLite each read and write is done
          // at once: without a turn of the event loop between them, replaying 2.1M events held the
          // API 22 s. The other requests go first.
          await yieldToLoop();
          batch = await read();
          continue;
        }
        if (batch.finished) break;
        if (!pending) {
          const untilHeartbeat = Math.max(0, lastSent + heartbeatMs - Date.now());
          await new Promise<void>((resolve) => {
            resolveWait = resolve;
            // The hub's poll (every EVENTS_POLL_MS) or a write's wake-up nudges; else the heartbeat.
            const t = setTimeout(resolve, untilHeartbeat);
            // Resolved early: the timer must not keep the process or the closure alive.
            resolveWait = () => {
              clearTimeout(t);
              resolve();
            };
          });
          resolveWait = null;
        }
        if (closed) break;
        if (Date.now() - lastSent >= heartbeatMs) {
          await write(reply, ': heartbeat\n\n');
          lastSent = Date.now();
        }
        if (!pending) {
          // Only the heartbeat was due: nothing to read until the hub nudges.
          batch = { finished: false, events: [] };
          continue;
        }
        pending = false;
        batch = await read();
      }
    } catch (err) {
      req.log.warn({ err, jobId: id }, 'job event stream ended by an error');
    } finally {
      unlisten();
      release();
      open.delete(end);
      reply.raw.off('close', end);
      reply.raw.end();
    }
  });
}
