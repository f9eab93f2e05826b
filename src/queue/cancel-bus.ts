// Cancellation travels over Redis pub/sub: Bull has no way to signal a running job. The worker
// also re-reads the job row at every step, so a message lost while it reconnected still cancels.
import type { Redis } from 'ioredis';
import { openSubscriber } from './redis-connection.js';
import type { CancelPort } from '../jobs/job-service.js';

export const cancelChannel = (prefix: string) => `${prefix}:training:cancel`;

export function cancelPublisher(redis: Redis, prefix: string): CancelPort {
  return {
    async publish(jobId) {
      await redis.publish(cancelChannel(prefix), jobId);
    },
  };
}

/** Subscribes on its own connection (a subscribed connection can run nothing else), made anew when it stops answering for `timeoutMs`. */
export async function subscribeCancels(
  redisUrl: string,
  prefix: string,
  onCancel: (jobId: string) => void,
  timeoutMs: number,
  /** Given the subscription's connection before it waits for Redis (to report its outages). */
  onConnection: (sub: Redis) => void = () => {},
): Promise<{ close(): Promise<void> }> {
  const sub = openSubscriber(redisUrl, timeoutMs, { maxRetriesPerRequest: null });
  onConnection(sub);
  // While Redis restarts, each reconnect attempt fails; without a listener ioredis printed each as
  // an "Unhandled error event" stack. It resubscribes once Redis is back, and a cancel sent
  // meanwhile still reaches the worker through the job's row.
  sub.on('error', () => {});
  // Waits (in ioredis's offline queue) until Redis answers. An explicit connect() failed on the
  // first refused attempt: a worker whose Redis went away just after answering its start-up PING
  // exited with "Connection is closed." and a stack.
  await sub.subscribe(cancelChannel(prefix));
  sub.on('message', (_channel: string, jobId: string) => onCancel(jobId));
  return {
    async close() {
      sub.disconnect();
    },
  };
}
