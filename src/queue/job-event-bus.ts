// Wake-ups for live job events. The events themselves are rows (JobEvent, written by the job
// lifecycle in the transaction of each change); Redis pub/sub only says "job X has new rows", so
// an SSE stream on any API replica reads them at once instead of at its next slow poll. A lost
// message therefore delays an event by at most that poll, and never loses it.
import type { Redis } from 'ioredis';
import { openSubscriber } from './redis-connection.js';
import type { JobWake } from '../jobs/job-events.js';

export const jobEventsChannel = (prefix: string) => `${prefix}:jobs:events`;

/** Publishes after commit, without waiting and without failing the write it follows. */
export function jobEventPublisher(redis: Redis, prefix: string, onError?: (err: unknown) => void): JobWake {
  const channel = jobEventsChannel(prefix);
  return (jobId) => {
    redis.publish(channel, jobId).catch((err: unknown) => onError?.(err));
  };
}

export interface JobEventSubscription {
  close(): Promise<void>;
}

/**
 * Subscribes on its own connection (a subscribed connection can run nothing else). Returns at
 * once: while Redis is away the streams rely on their database poll, and ioredis subscribes again
 * whenever it reconnects.
 */
export function subscribeJobEvents(redisUrl: string, prefix: string, onWake: (jobId: string) => void, timeoutMs: number): JobEventSubscription {
  const sub = openSubscriber(redisUrl, timeoutMs, { maxRetriesPerRequest: null });
  sub.on('error', () => {});
  sub.subscribe(jobEventsChannel(prefix)).catch(() => {});
  sub.on('message', (_channel: string, jobId: string) => onWake(jobId));
  return {
    async close() {
      sub.disconnect();
    },
  };
}
