// GET /v1/jobs/:id/events: a job's events as Server-Sent Events (`train` scope, like the other
// job routes). The events are JobEvent rows (src/jobs/job-events.ts), so any API replica can serve
// any job's stream: a Redis pub/sub message wakes the streams of that job at once, and a slow poll
// of the database covers a lost message or a Redis outage.
//
// Streams are admitted (StreamSlots): each lasts as long as its job, polls the database and reads it
// again on every write of the job, so a rate limit alone would let one key hold hundreds open.
//
// Event ids are JobEvent ids. One job's events commit in id order (each is written after its
// write locked the job's row), so resuming with Last-Event-ID: N — reading ids above N — sends
// every later event once. The stream ends after the event that finishes the job; asked for a job
// already finished, it sends what follows Last-Event-ID and ends.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { JobService } from '../../jobs/job-service.js';
import { JobIdParams } from '../../jobs/job-view.js';
import { subscribeJobEvents, type JobEventSubscription } from '../../queue/job-event-bus.js';
import { ServiceError, ValidationError } from '../../jobs/job-errors.js';
import { parseRequest } from '../validate.js';
import { rateLimitKey } from '../plugins/rate-limit.js';

/** How often a stream reads the database when no wake-up came (a lost message, Redis away). */
export const EVENTS_POLL_MS = 2000;
/** Events read per query; a stream behind by more reads again at once. */
const BATCH = 200;
/** What a browser's EventSource waits before reconnecting. */
const RETRY_MS = 2000;

const LastEventId = z.string().regex(/^\d{1,15}$/, 'expected the id of an event this stream sent (a non-negative integer)');

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
  private readonly byClient = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly perClient: number,
    private readonly max: number,
  ) {}

  /** Takes a slot for `client` or throws; the returned function gives it back (once). */
  take(client: string): () => void {
    if (this.max > 0 && this.total >= this.max) throw new StreamsFullError(this.max);
    const held = this.byClient.get(client) ?? 0;
    if (this.perClient > 0 && held >= this.perClient) throw new TooManyStreamsError(this.perClient);
    this.byClient.set(client, held + 1);
    this.total++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.total--;
      const left = (this.byClient.get(client) ?? 1) - 1;
      if (left > 0) this.byClient.set(client, left);
      else this.byClient.delete(client);
    };
  }

  get open(): number {
    return this.total;
  }
}

/** Wake-ups by job id, for the streams open in this process. */
export class JobEventHub {
  private readonly listeners = new Map<string, Set<() => void>>();
  private subscription: JobEventSubscription | null = null;

  start(redisUrl: string, prefix: string): void {
    this.subscription ??= subscribeJobEvents(redisUrl, prefix, (jobId) => this.wake(jobId));
  }

  wake(jobId: string): void {
    for (const fn of this.listeners.get(jobId) ?? []) fn();
  }

  listen(jobId: string, fn: () => void): () => void {
    let set = this.listeners.get(jobId);
    if (!set) this.listeners.set(jobId, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0) this.listeners.delete(jobId);
    };
  }

  async close(): Promise<void> {
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
    let batch;
    try {
      // 404 before the stream starts, while an error can still be a normal response.
      batch = await jobs.eventsSince(id, lastId, BATCH);
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
        for (const e of batch.events) {
          await write(reply, sseFrame(e));
          lastId = e.id;
          lastSent = Date.now();
        }
        if (batch.events.length === BATCH) {
          batch = await jobs.eventsSince(id, lastId, BATCH);
          continue;
        }
        if (batch.finished) break;
        if (!pending) {
          const untilHeartbeat = Math.max(0, lastSent + heartbeatMs - Date.now());
          await new Promise<void>((resolve) => {
            resolveWait = resolve;
            const t = setTimeout(resolve, Math.min(EVENTS_POLL_MS, untilHeartbeat));
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
        pending = false;
        batch = await jobs.eventsSince(id, lastId, BATCH);
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
