// A Redis in cluster mode (AWS ElastiCache or Azure Cache with clustering on, a node of a Redis
// Cluster) cannot hold the job queue: Bull's scripts touch several keys at once, which a cluster
// refuses unless they share a hash slot ("CROSSSLOT Keys in request don't hash to the same slot"),
// and a node answers only for its own slots ("MOVED 12575 10.0.0.3:6379"). Measured by hand before
// (a three-node cluster, REDIS_URL at one node): /readyz said ready, every POST /v1/jobs answered
// 503 "the job queue is unreachable: CROSSSLOT ...", and the worker logged that error with its
// stack twice every 5 s. So the services say what it is when they connect, /readyz fails its
// queue check, and a POST names it.
import type { Redis } from 'ioredis';
import { QueueUnavailableError } from '../jobs/job-errors.js';
import { isRedisFull } from './redis-memory.js';
import { redisServer } from './redis-connection.js';

/** Whether an `INFO cluster` answer says cluster mode is on. */
export const clusterEnabled = (info: string): boolean => /^cluster_enabled:1\s*$/m.test(info);

/** Whether `err` is a cluster refusing a command for where its keys live. */
export const isClusterRefusal = (err: unknown): boolean => err instanceof Error && /^(CROSSSLOT|MOVED|ASK|CLUSTERDOWN)\b/.test(err.message);

/** What the services say of a Redis in cluster mode. */
export const clusterLine = (server: string): string =>
  `Redis at ${server} runs in cluster mode (cluster_enabled:1), which cannot hold the job queue: its commands touch several keys at once, which a cluster refuses (CROSSSLOT, MOVED). ` +
  "Point REDIS_URL at a Redis without cluster mode (a managed service's 'cluster mode disabled' kind, or a primary with replicas)";

/** Throws clusterLine when `redis`'s server runs in cluster mode; nothing when it does not, or hides INFO. */
export async function assertNotCluster(redis: Redis): Promise<void> {
  const info = await redis.info('cluster').catch(() => '');
  if (clusterEnabled(info)) throw new Error(clusterLine(redisServer(redis)));
}

/** Calls `say` when `redis` connects to a server in cluster mode (each time: a failover may bring one). */
export function warnIfCluster(redis: Redis, say: (line: string) => void): void {
  const check = () => void assertNotCluster(redis).catch((err: Error) => say(err.message));
  redis.on('ready', check);
  if (redis.status === 'ready') check();
}

/** The 503 for a queue command that failed with `err`: Redis full, in cluster mode, or out of reach. */
export function queueUnavailable(err: unknown): QueueUnavailableError {
  if (err instanceof QueueUnavailableError) return err;
  const kind = isRedisFull(err) ? 'full' : isClusterRefusal(err) ? 'cluster' : 'unreachable';
  return new QueueUnavailableError((err as Error).message, kind);
}
