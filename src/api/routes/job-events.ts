// GET /v1/jobs/:id/events: a job's events as Server-Sent Events (`train` scope, like the other
// job routes). The events are JobEvent rows (src/jobs/job-events.ts), so any API replica can serve
// any job's stream: a Redis pub/sub message wakes the streams of that job at once, and a slow poll
// of the database covers a lost message or a Redis outage.
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
import { ValidationError } from '../../jobs/job-errors.js';
import { parseRequest } from '../validate.js';

/** How often a stream reads the database when no wake-up came (a lost message, Redis away). */
export const EVENTS_POLL_MS = 2000;
/** Events read per query; a stream behind by more reads again at once. */
const BATCH = 200;
/** What a browser's EventSource waits before reconnecting. */
const RETRY_MS = 2000;

const LastEventId = z.string().regex(/^\d{1,15}$/, 'expected the id of an event this stream sent (a non-negative integer)');

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

export async function jobEventRoutes(app: FastifyInstance, opts: { jobs: JobService; hub: JobEventHub; heartbeatMs: number }) {
  const { jobs, hub, heartbeatMs } = opts;
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
    // 404 before the stream starts, while an error can still be a normal response.
    let batch = await jobs.eventsSince(id, lastId, BATCH);

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
    const unlisten = hub.listen(id, nudge);
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
      open.delete(end);
      reply.raw.off('close', end);
      reply.raw.end();
    }
  });
}
