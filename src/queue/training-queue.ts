// The Bull queue "training": its options in one place, and the producer side the API uses.
// The worker side (processing) lives in worker.ts; this file never imports ML code.
import Queue from 'bull';
import type { Settings } from '../config/settings.js';
import { QueueUnavailableError } from '../jobs/job-errors.js';
import type { JobQueuePort } from '../jobs/job-service.js';

export const QUEUE_NAME = 'training';

export interface TrainingJobData {
  jobId: string;
}

export type TrainingQueue = Queue.Queue<TrainingJobData>;

/**
 * A job handed back by a worker that shuts down is retried (it is "failed" with attempts left);
 * a job that really fails is discarded first, so this budget only counts hand-backs.
 */
const HANDBACK_ATTEMPTS = 1000;

export function openTrainingQueue(settings: Settings): TrainingQueue {
  return new Queue<TrainingJobData>(QUEUE_NAME, settings.redisUrl, {
    prefix: settings.queuePrefix,
    settings: {
      lockDuration: settings.lockDurationMs,
      lockRenewTime: Math.floor(settings.lockDurationMs / 2),
      stalledInterval: settings.stalledIntervalMs,
      maxStalledCount: settings.maxStalledCount,
    },
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export interface QueueProducer extends JobQueuePort {
  counts(): Promise<Record<string, number>>;
  /** Throws with a reason when Redis does not answer. */
  ping(timeoutMs?: number): Promise<void>;
}

export function queueProducer(queue: TrainingQueue, timeoutMs = 5000): QueueProducer {
  return {
    async enqueue(jobId) {
      try {
        // Down after having been up: answer now instead of waiting out the timeout.
        const status = queue.client.status;
        if (status === 'reconnecting' || status === 'end') throw new Error(`Redis connection is ${status}`);
        await withTimeout(
          queue.add(
            { jobId },
            // Failed Bull jobs are kept (the newest 1000): when Bull fails a job for stalling too
            // often it removes a removeOnFail job before emitting 'failed', and the worker would
            // get a null job and could not mark the row failed (it stayed "running" forever).
            { jobId, attempts: HANDBACK_ATTEMPTS, removeOnComplete: true, removeOnFail: { count: 1000 } },
          ),
          timeoutMs,
          'enqueue',
        );
      } catch (err) {
        throw new QueueUnavailableError((err as Error).message);
      }
    },
    async remove(jobId) {
      const job = await withTimeout(queue.getJob(jobId), timeoutMs, 'getJob');
      // An active job is locked and cannot be removed; its worker sees the row instead.
      if (job && !(await job.isActive())) await job.remove();
    },
    async counts() {
      const c = await withTimeout(queue.getJobCounts(), timeoutMs, 'getJobCounts');
      return { ...c } as unknown as Record<string, number>;
    },
    async ping(ms = 1000) {
      const status = queue.client.status;
      if (status !== 'ready') throw new Error(`queue connection is ${status}`);
      await withTimeout(queue.client.ping(), ms, 'queue ping');
    },
  };
}
