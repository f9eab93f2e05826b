// The deployment's Redis and its memory limit (`maxmemory`), two ways it goes wrong in silence.
//
// It may drop keys when full. Bull keeps its queue in plain keys and each running job's lock in a
// key with an expiry: a Redis that evicts (`allkeys-*` drops any key, `volatile-*` those with an
// expiry, locks included) loses queue entries and locks without an error. Managed Redis services
// often ship with an evicting policy, and a Redis shared with a cache is usually set so. A lost
// entry waits for the reconciler; a lost lock puts the running job back on the queue, to resume
// from its last checkpoint. So the services say it when they connect.
//
// Or it is full and keeps every key (noeviction, as it should): then it refuses writes ("OOM
// command not allowed"). Measured by hand (an 8 MiB Redis filled up): workers could take no job,
// so a queued job waited for ever; their state entries lapsed, so GET /v1/workers said there were
// none; each worker logged Bull's error with its stack every 5 s; a POST answered "the job queue is
// unreachable". So the API names it in its answer, and a worker says it once and when it is over.
import type { Redis } from 'ioredis';
import { redisServer } from './redis-connection.js';

export interface RedisMemory {
  policy: string;
  /** 0: no memory limit, so nothing is ever evicted or refused whatever the policy. */
  maxmemoryBytes: number;
  /** What Redis compares with maxmemory: used memory less its replication and AOF buffers. */
  usedBytes: number;
}

/** The memory fields of an `INFO memory` answer; null when it names no policy. */
export function parseMemory(info: string): RedisMemory | null {
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
  const bytes = (name: string) => Number(field(name) ?? 0) || 0;
  const policy = field('maxmemory_policy');
  if (!policy) return null;
  return { policy, maxmemoryBytes: bytes('maxmemory'), usedBytes: Math.max(0, bytes('used_memory') - bytes('mem_not_counted_for_evict')) };
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

/** Whether `m` lets Redis drop keys: a memory limit with any policy but noeviction. */
export const evicts = (m: RedisMemory): boolean => m.policy !== 'noeviction' && m.maxmemoryBytes > 0;

/** The warning for a Redis that evicts (see evicts). */
function evictionWarning(server: string, m: RedisMemory): string {
  return (
    `Redis at ${server} drops keys when it holds maxmemory ${mib(m.maxmemoryBytes)} MiB (maxmemory-policy ${m.policy}): ` +
    "the job queue's entries and running jobs' locks can vanish (a queued job then waits for the reconciler, a running one goes back to the queue to resume from its last checkpoint); " +
    'set maxmemory-policy noeviction on it, as Bull requires'
  );
}

/** `INFO memory` of `redis`, parsed; null when it does not answer it (a managed service may rename it away). */
async function readMemory(redis: Redis): Promise<RedisMemory | null> {
  const info = await redis.info('memory').catch(() => null);
  return info === null ? null : parseMemory(info);
}

/**
 * Checks `redis`'s eviction setting each time it connects (a restarted or failed-over server may
 * be set otherwise) and calls `warn` when it evicts, once per setting.
 */
export function warnIfEvicting(redis: Redis, warn: (line: string) => void): void {
  let said = '';
  const check = async () => {
    const m = await readMemory(redis);
    if (!m || !evicts(m)) return;
    const line = evictionWarning(redisServer(redis), m);
    if (line === said) return;
    said = line;
    warn(line);
  };
  redis.on('ready', () => void check());
  if (redis.status === 'ready') void check();
}

/**
 * Whether `err` is Redis refusing a write because it is full (at its maxmemory, evicting nothing),
 * alone or as the reason a MULTI was discarded (ioredis's EXECABORT error lists its commands' errors).
 */
export function isRedisFull(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const previous = (err as { previousErrors?: unknown }).previousErrors;
  return /^OOM command not allowed\b/.test(err.message) || (Array.isArray(previous) && previous.some(isRedisFull));
}

/** "Redis at host:port is full ...": what refused the write, for messages. */
const redisFullLine = (server: string): string =>
  `Redis at ${server} is full: its memory reached its maxmemory and it refuses writes (OOM); free memory on it (its largest keys: redis-cli --bigkeys) or raise its maxmemory`;

/**
 * redisFullLine when an `INFO` answer of the server at `server` says it is at its maxmemory and
 * evicts nothing, so refuses writes; else null (what /readyz's queue check asks: before, a full
 * Redis left the API ready while every POST /v1/jobs answered 503 "the job queue is full").
 */
export function fullLine(server: string, info: string): string | null {
  const m = parseMemory(info);
  return m && !evicts(m) && m.maxmemoryBytes > 0 && m.usedBytes >= m.maxmemoryBytes ? redisFullLine(server) : null;
}

/**
 * Fraction of maxmemory under which a full Redis counts as having room again. Writes succeed as
 * soon as it is under its limit, but a worker's next writes would fill it again: without the
 * margin a Redis at its limit would be reported full and free every few seconds.
 */
const ROOM_FRACTION = 0.95;

/**
 * Says once that `redis` is full when `saw` is given a refusal for it (isRedisFull), then reads its
 * memory every `pollMs` until it has room again (under ROOM_FRACTION of maxmemory, or no limit)
 * and says that once. Refusals seen in between say nothing more.
 */
export function watchRedisFull(redis: Redis, pollMs: number, onFull: (line: string) => void, onRoom: (line: string) => void) {
  let timer: NodeJS.Timeout | null = null;
  const poll = async () => {
    const m = await readMemory(redis);
    if (m && (m.maxmemoryBytes === 0 || m.usedBytes < ROOM_FRACTION * m.maxmemoryBytes)) {
      stop();
      onRoom(`Redis at ${redisServer(redis)} has room again (${mib(m.usedBytes)} MiB used of maxmemory ${mib(m.maxmemoryBytes)} MiB)`);
    }
  };
  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  return {
    /** Whether `err` was a full Redis's refusal (and so is said by this watch, not by the caller). */
    saw(err: unknown): boolean {
      if (!isRedisFull(err)) return false;
      if (timer) return true;
      onFull(redisFullLine(redisServer(redis)));
      timer = setInterval(() => void poll(), pollMs);
      timer.unref();
      return true;
    },
    stop,
  };
}
