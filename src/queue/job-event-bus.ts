// Wake-ups for live job events. The events themselves are rows (JobEvent, written by the job
// lifecycle in the transaction of each change); Redis pub/sub only says "job X has new rows", so
// an SSE stream on any API replica reads them at once instead of at its next slow poll. A lost
// message therefore delays an event by at most that poll, and never loses it.
import { Redis } from 'ioredis';
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

/** Subscribes on its own connection (a subscribed connection can run nothing else). */
export async function subscribeJobEvents(redisUrl: string, prefix: string, onWake: (jobId: string) => void): Promise<JobEventSubscription> {
  const sub = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  sub.on('error', () => {}); // the streams' database poll covers the outage; ioredis reconnects
  await sub.connect();
  await sub.subscribe(jobEventsChannel(prefix));
  sub.on('message', (_channel: string, jobId: string) => onWake(jobId));
  return {
    async close() {
      sub.disconnect();
    },
  };
}
