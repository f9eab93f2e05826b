// The Bull queue "training": its options in one place, and the producer side the API uses.
// The worker side (processing) lives in worker.ts; this file never imports ML code.
import { once } from 'node:events';
import Queue from 'bull';
import { redisOptions } from './redis-connection.js';
import { assertDatabase, assertQueueWritable, queueUnavailable } from './redis-role.js';
import type { Settings } from '../config/settings.js';
import { requireDeployment } from '../db/deployment.js';
import type { JobQueuePort } from '../jobs/job-service.js';
import { handBackDelay } from './dataset-holders.js';
import { withTimeout } from '../with-timeout.js';

export const QUEUE_NAME = 'training';

export interface TrainingJobData {
  jobId: string;
  /** The deployment that queued it (absent in entries queued before deployments existed). */
  deploymentId?: string;
}

/** Where a job's queue entry stands; null when the queue holds none. */
export type EntryState = 'waiting' | 'active' | 'delayed' | 'paused' | 'completed' | 'failed' | 'stuck' | null;

export type TrainingQueue = Queue.Queue<TrainingJobData>;

/**
 * A job handed back by a worker that shuts down is retried (it is "failed" with attempts left);
 * a job that really fails is discarded first, so this budget only counts hand-backs.
 */
const HANDBACK_ATTEMPTS = 1000;
/** The Bull backoff strategy of every entry: see handBackDelay. */
const HAND_BACK = 'handBack';

/**
 * TLS for a `rediss://` REDIS_URL. Bull reads the URL itself (host, port, user, password, db) and
 * drops its scheme: against a TLS-only Redis, as managed services run them, its connections spoke
 * plain text to a TLS port, so the queue never connected ("queue connection is reconnecting")
 * while every other connection, made by ioredis from the same URL, did.
 */
const tlsOf = (redisUrl: string): { tls?: object } => (/^rediss:\/\//i.test(redisUrl) ? { tls: {} } : {});

export function openTrainingQueue(settings: Settings): TrainingQueue {
  const { queuePrefix } = requireDeployment(settings);
  return new Queue<TrainingJobData>(QUEUE_NAME, settings.redisUrl, {
    prefix: queuePrefix,
    redis: { ...redisOptions(settings.redisTimeoutMs), ...tlsOf(settings.redisUrl) },
    settings: {
      lockDuration: settings.lockDurationMs,
      lockRenewTime: Math.floor(settings.lockDurationMs / 2),
      stalledInterval: settings.stalledIntervalMs,
      maxStalledCount: settings.maxStalledCount,
      backoffStrategies: { [HAND_BACK]: handBackDelay },
    },
  });
}

export interface QueueProducer extends JobQueuePort {
  counts(): Promise<Record<string, number>>;
  /** The state of the job's queue entry (the reconciler compares it with the row). */
  entryState(jobId: string): Promise<EntryState>;
  /** Puts the job on the queue again, replacing a finished (completed or failed) entry and keeping its priority. */
  requeue(jobId: string): Promise<void>;
  /**
   * Jobs the queue hands out before this one (0: it is next), or null when it is not waiting there.
   * Workers pop the wait list from its right end (BRPOPLPUSH).
   */
  waitingAhead(jobId: string): Promise<number | null>;
  /** Throws with a reason when Redis does not answer. */
  ping(timeoutMs?: number): Promise<void>;
}

/** How long a POST waits for a queue connection that is reconnecting. */
const RECONNECT_WAIT_MS = 1000;

/** Whether `redis` is ready within `ms`. */
const readyWithin = (redis: TrainingQueue['client'], ms: number): Promise<boolean> =>
  once(redis, 'ready', { signal: AbortSignal.timeout(ms) }).then(
    () => true,
    () => false,
  );

export function queueProducer(queue: TrainingQueue, deploymentId: string, timeoutMs = 5000): QueueProducer {
  const producer: QueueProducer = {
    async enqueue(jobId, priority = 1) {
      try {
        // Down after having been up: answer within a second instead of waiting out the timeout. A
        // connection made anew to follow a failover (redisOptions, followFailover) is back by then.
        const status = queue.client.status;
        if (status === 'end' || (status === 'reconnecting' && !(await readyWithin(queue.client, RECONNECT_WAIT_MS)))) {
          throw new Error(`Redis connection is ${status}`);
        }
        await withTimeout(assertDatabase(queue.client), timeoutMs, 'SELECT');
        await withTimeout(
          queue.add(
            { jobId, deploymentId },
            // Failed Bull jobs are kept (the newest 1000): when Bull fails a job for stalling too
            // often it removes a removeOnFail job before emitting 'failed', and the worker would
            // get a null job and could not mark the row failed (it stayed "running" forever).
            {
              jobId,
              priority,
              attempts: HANDBACK_ATTEMPTS,
              backoff: { type: HAND_BACK },
              removeOnComplete: true,
              removeOnFail: { count: 1000 },
            },
          ),
          timeoutMs,
          'enqueue',
        );
      } catch (err) {
        throw queueUnavailable(err);
      }
    },
    async remove(jobId) {
      const job = await withTimeout(queue.getJob(jobId), timeoutMs, 'getJob');
      // An active job is locked and cannot be removed; its worker sees the row instead.
      if (job && !(await job.isActive())) await job.remove();
    },
    async waitingAhead(jobId) {
      const wait = queue.toKey('wait');
      const [length, index] = await withTimeout(Promise.all([queue.client.llen(wait), queue.client.lpos(wait, jobId)]), timeoutMs, 'queue position').catch(
        (err: unknown) => {
          throw queueUnavailable(err);
        },
      );
      return index === null ? null : length - 1 - index;
    },
    async priorityOf(jobId) {
      const job = await withTimeout(queue.getJob(jobId), timeoutMs, 'getJob');
      return job?.opts.priority ?? null;
    },
    async counts() {
      const c = await withTimeout(queue.getJobCounts(), timeoutMs, 'getJobCounts');
      return { ...c };
    },
    async ping(ms = 1000) {
      const status = queue.client.status;
      if (status !== 'ready') throw new Error(`queue connection is ${status}`);
      // A Redis in cluster mode, a replica or a full one answers PING but refuses the queue's commands.
      await withTimeout(Promise.all([queue.client.ping(), assertQueueWritable(queue.client)]), ms, 'queue ping');
    },
    async entryState(jobId) {
      const job = await withTimeout(queue.getJob(jobId), timeoutMs, 'getJob');
      return job ? await job.getState() : null;
    },
    async requeue(jobId) {
      const job = await withTimeout(queue.getJob(jobId), timeoutMs, 'getJob');
      if (job) {
        const state = await job.getState();
        if (state !== 'completed' && state !== 'failed') return; // still on the queue
        await job.remove();
      }
      // Its place among its key's jobs (a lost entry has none to keep: it goes first).
      await producer.enqueue(jobId, job?.opts.priority ?? 1);
    },
  };
  return producer;
}
