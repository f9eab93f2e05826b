// The options of every Redis connection (the API's, the reconciler's, a worker's publisher, Bull's,
// the subscriptions). ioredis waits for an answer for ever by default: when Redis stops
// answering (a network partition, a failover whose old primary is gone) a command in flight waits
// until the kernel gives up on its TCP connection, about 15 minutes, and every command after it
// queues behind. Measured before: the API's rate limit asks Redis on every request, so every
// request but /healthz hung (curl gave up after 60 s) once Redis's host stopped answering, also
// after its name had moved to a live server. With `socketTimeout`, a connection that got no answer
// in time is dropped and made anew (looking the host up again), and its commands fail.
import { Redis, type RedisOptions } from 'ioredis';
import { certRefusedLine, isCertRefused, isSocketUnreachable } from '../socket-errors.js';
import { hostPort } from '../host-port.js';
import { withTimeout } from '../with-timeout.js';
import { readRefusal, RedisRefusal, refusalLine } from './redis-refusal.js';

/**
 * A command refused because its server is no longer the primary: a managed Redis's failover
 * (ElastiCache, Azure Cache, Memorystore) promotes a replica, moves the primary endpoint's name to
 * it, and may keep the old primary running as a replica. Connections made before stay on the old
 * server: every write on them was refused (READONLY), and blocked reads ended with UNBLOCKED, for
 * as long as the process ran, so the API answered 503 to every new job and workers took none.
 * Measured by hand before (`qatserve serve` on a name moved by /etc/hosts): still so 45 s after.
 */
export const isDemotedRefusal = (err: Error): boolean => /^READONLY\b|^UNBLOCKED\b.*instance state changed/.test(err.message);

/** How often a refused write may make its connection anew (a REDIS_URL that names a replica refuses them all). */
const REMAKE_EVERY_MS = 1000;

/**
 * `options` with answers awaited at most `timeoutMs`, and a connection whose server turned replica
 * made anew (its command fails as before): the new one looks REDIS_URL's name up again, so it
 * reaches the promoted primary once the name has moved.
 */
export function redisOptions(timeoutMs: number, options: RedisOptions = {}): RedisOptions {
  let remadeAt = 0;
  const reconnectOnError = (err: Error): boolean => {
    if (!isDemotedRefusal(err) || Date.now() - remadeAt < REMAKE_EVERY_MS) return false;
    remadeAt = Date.now();
    return true;
  };
  return { reconnectOnError, ...options, socketTimeout: timeoutMs };
}

/** A connection to `url` that waits at most `timeoutMs` for an answer (see redisOptions). */
export const openRedis = (url: string, timeoutMs: number, options: RedisOptions = {}): Redis => new Redis(url, redisOptions(timeoutMs, options));

/**
 * A connection to `url` for SUBSCRIBE. A subscribed connection only listens: with no command
 * outstanding nothing times out, and a dead one (its server gone in a failover) went unnoticed for
 * as long as the process ran. A PING every `timeoutMs` gives socketTimeout something to time; on
 * the new connection ioredis subscribes again.
 */
export function openSubscriber(url: string, timeoutMs: number, options: RedisOptions = {}): Redis {
  const sub = openRedis(url, timeoutMs, options);
  const timer = setInterval(() => {
    sub.ping().catch(() => {});
  }, timeoutMs);
  timer.unref();
  sub.once('end', () => clearInterval(timer));
  return sub;
}

/** Where a connection points, for messages: `host:port` (never its password; REDIS_URL is a redis:// URL). */
export const redisServer = (redis: Redis): string => hostPort(redis.options.host ?? 'localhost', redis.options.port ?? 6379);

/** How long the check of what Redis says to a new connection (readRefusal) may take. */
const REFUSAL_READ_MS = 1000;

/**
 * How long a connection must stay open after `ready` to count as up. Bull's connections skip
 * ioredis's ready check, so they are `ready` as soon as they connect, also when Redis then turns
 * them away (its maxclients) or refuses their password: such a connection is ready and closed
 * again every few milliseconds.
 */
const STEADY_MS = 1000;

/**
 * Calls `onDown` when `redis` loses its connection or cannot make one (refused, timed out, or
 * turned away: a wrong password, Redis at its maxclients or in protected mode), with the error that
 * said why, and `onUp` when it is connected again: one call each per outage. ioredis reports every
 * reconnect attempt, up to one every 2 s, for as long as the outage lasts.
 */
export function reportOutages(redis: Redis, onDown: (err: Error) => void, onUp: () => void): void {
  let lost = false;
  let reported = false;
  /** onDown was called (the reason is read first: `reported` is set meanwhile). */
  let said = false;
  let lastError: Error | null = null;
  /** Connected, not yet steady (STEADY_MS after ready): a close now is Redis turning it away. */
  let opening = false;
  let turnedAway = false;
  let steady: NodeJS.Timeout | null = null;
  const say = (err: Error) => {
    said = true;
    onDown(err);
  };
  // Said once the connection is lost, with the error of an attempt to connect: a server that shut
  // down cleanly closes with no error at all, and an error while connected (one command's) is no
  // outage. Redis's reason for turning connections away comes with no error: it is read.
  const report = () => {
    if (reported || !lost || !(lastError || turnedAway)) return;
    reported = true;
    const err = lastError;
    if (err && (isRedisAuthError(err) || isCertRefused(err))) return say(err);
    void readRefusal(redis, REFUSAL_READ_MS).then((refusal) => {
      if (reported) say(refusal ?? err ?? new Error('it closed the connection before answering'));
    });
  };
  const up = () => {
    steady = null;
    lost = opening = turnedAway = reported = false;
    if (!said) return;
    said = false;
    onUp();
  };
  redis.on('connect', () => (opening = true));
  redis.on('ready', () => {
    if (steady) return;
    steady = setTimeout(up, STEADY_MS);
    steady.unref();
  });
  redis.on('close', () => {
    if (steady) clearTimeout(steady);
    steady = null;
    // An error while it opened is why it closed; one of a steady connection's commands is not.
    if (!opening) lastError = null;
    turnedAway = opening;
    opening = false;
  });
  redis.on('error', (err: Error) => {
    lastError = err;
    report();
  });
  redis.on('reconnecting', () => {
    lost = true;
    report();
  });
}

/** How often the connections made since (Bull makes each when it first needs it) join reportJointOutages. */
const JOIN_EVERY_MS = 1000;

/**
 * reportOutages for all of a process's connections (`connections()`, asked every second for those
 * made since), said as one outage: `onDown` with the reason of the first to go down, `onUp` once
 * each that went down is up again. A Redis at its maxclients takes some of them and turns the
 * others away: a worker whose own connection was taken but whose queue's were not said nothing,
 * and took no job.
 */
export function reportJointOutages(connections: () => Redis[], onDown: (err: Error) => void, onUp: () => void): { stop(): void } {
  const watched = new WeakSet<Redis>();
  const down = new Set<Redis>();
  const join = () => {
    for (const redis of connections()) {
      if (watched.has(redis)) continue;
      watched.add(redis);
      reportOutages(
        redis,
        (err) => {
          if (down.size === 0) onDown(err);
          down.add(redis);
        },
        () => {
          if (down.delete(redis) && down.size === 0) onUp();
        },
      );
    }
  };
  join();
  const timer = setInterval(join, JOIN_EVERY_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/**
 * "Redis at host:port cannot be reached (...)", "cannot be used" for an answer that turned this
 * process away, Redis's reason for turning its connections away (readRefusal), or what to do
 * about a TLS certificate it did not accept.
 */
export function redisOutageLine(redis: Redis, err: Error): string {
  if (isCertRefused(err)) return `Redis at ${redisServer(redis)} ${certRefusedLine(err)}`;
  if (err instanceof RedisRefusal) return `Redis at ${redisServer(redis)} ${refusalLine(err)}`;
  return `Redis at ${redisServer(redis)} ${isSocketUnreachable(err) ? 'cannot be reached' : 'cannot be used'} (${err.message})`;
}

/** Whether `err` is Redis turning a connection away (wrong or missing password, or user). */
export const isRedisAuthError = (err: Error): boolean => /^(WRONGPASS|NOAUTH|NOPERM)\b/.test(err.message);

/** Resolves once `redis` answers a PING (each awaited at most `timeoutMs`), trying every `retryMs`. */
export async function untilRedisAnswers(redis: Redis, timeoutMs: number, retryMs: number): Promise<void> {
  for (;;) {
    try {
      await withTimeout(redis.ping(), timeoutMs, 'Redis PING');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }
}
