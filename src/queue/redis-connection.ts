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

/** `options` with answers awaited at most `timeoutMs`. */
export const redisOptions = (timeoutMs: number, options: RedisOptions = {}): RedisOptions => ({ ...options, socketTimeout: timeoutMs });

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

/**
 * Calls `onDown` when `redis` loses its connection or cannot make one (refused, timed out, or
 * turned away: a wrong password), with the error that said why, and `onUp` when it is connected
 * again: one call each per outage. ioredis reports every reconnect attempt, up to one every 2 s,
 * for as long as the outage lasts.
 */
export function reportOutages(redis: Redis, onDown: (err: Error) => void, onUp: () => void): void {
  let lost = false;
  let reported = false;
  let lastError: Error | null = null;
  // Said with the error of an attempt to connect, made after the connection closed: a server that
  // shut down cleanly closes with no error at all, and an error while connected (one command's)
  // is no outage.
  const report = () => {
    if (reported || !lost || !lastError) return;
    reported = true;
    onDown(lastError);
  };
  redis.on('close', () => (lastError = null));
  redis.on('error', (err: Error) => {
    lastError = err;
    report();
  });
  redis.on('reconnecting', () => {
    lost = true;
    report();
  });
  redis.on('ready', () => {
    lost = false;
    if (!reported) return;
    reported = false;
    onUp();
  });
}

/**
 * "Redis at host:port cannot be reached (...)", "cannot be used" for an answer that turned this
 * process away, or what to do about a TLS certificate it did not accept.
 */
export function redisOutageLine(redis: Redis, err: Error): string {
  if (isCertRefused(err)) return `Redis at ${redisServer(redis)} ${certRefusedLine(err)}`;
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
