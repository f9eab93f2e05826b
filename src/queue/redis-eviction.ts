// Whether the deployment's Redis may drop keys when it is full. Bull keeps its queue in plain keys
// and each running job's lock in a key with an expiry: a Redis that evicts (`allkeys-*` drops any
// key, `volatile-*` those with an expiry, locks included) loses queue entries and locks in silence.
// Managed Redis services often ship with an evicting policy, and a Redis shared with a cache is
// usually set so. A lost entry waits for the reconciler; a lost lock puts the running job back on
// the queue, to resume from its last checkpoint. Neither shows up as an error, so the services say
// it when they connect.
import type { Redis } from 'ioredis';
import { redisServer } from './redis-connection.js';

export interface EvictionSetting {
  policy: string;
  /** 0: no memory limit, so nothing is ever evicted whatever the policy. */
  maxmemoryBytes: number;
}

/** `maxmemory` and `maxmemory_policy` of an `INFO memory` answer; null when it names no policy. */
export function parseEviction(info: string): EvictionSetting | null {
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
  const policy = field('maxmemory_policy');
  if (!policy) return null;
  return { policy, maxmemoryBytes: Number(field('maxmemory') ?? 0) || 0 };
}

/** Whether `s` lets Redis drop keys: a memory limit with any policy but noeviction. */
export const evicts = (s: EvictionSetting): boolean => s.policy !== 'noeviction' && s.maxmemoryBytes > 0;

/** The warning for a Redis that evicts (see evicts). */
export function evictionWarning(server: string, s: EvictionSetting): string {
  const mib = Math.round(s.maxmemoryBytes / 2 ** 20);
  return (
    `Redis at ${server} drops keys when it holds maxmemory ${mib} MiB (maxmemory-policy ${s.policy}): ` +
    "the job queue's entries and running jobs' locks can vanish (a queued job then waits for the reconciler, a running one goes back to the queue to resume from its last checkpoint); " +
    'set maxmemory-policy noeviction on it, as Bull requires'
  );
}

/**
 * Checks `redis`'s eviction setting each time it connects (a restarted or failed-over server may
 * be set otherwise) and calls `warn` when it evicts, once per setting. A server that does not
 * answer INFO (a managed service may rename it away) is left unchecked.
 */
export function warnIfEvicting(redis: Redis, warn: (line: string) => void): void {
  let said = '';
  const check = async () => {
    const info = await redis.info('memory').catch(() => null);
    const s = info === null ? null : parseEviction(info);
    if (!s || !evicts(s)) return;
    const line = evictionWarning(redisServer(redis), s);
    if (line === said) return;
    said = line;
    warn(line);
  };
  redis.on('ready', () => void check());
  if (redis.status === 'ready') void check();
}
