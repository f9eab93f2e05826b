// The options of every Redis connection that sends commands (the API's, the reconciler's, a
// worker's publisher, Bull's). ioredis waits for an answer for ever by default: when Redis stops
// answering (a network partition, a failover whose old primary is gone) a command in flight waits
// until the kernel gives up on its TCP connection, about 15 minutes, and every command after it
// queues behind. Measured before: the API's rate limit asks Redis on every request, so every
// request but /healthz hung (curl gave up after 60 s) once Redis's host stopped answering, also
// after its name had moved to a live server. With `socketTimeout`, a connection that got no answer
// in time is dropped and made anew (looking the host up again), and its commands fail.
import { Redis, type RedisOptions } from 'ioredis';

/** Bull's workers block on BRPOPLPUSH for its drainDelay (5 s): a timeout must outlast that wait. */
export const REDIS_TIMEOUT_MIN_MS = 6_000;

/** `options` with answers awaited at most `timeoutMs`. */
export const redisOptions = (timeoutMs: number, options: RedisOptions = {}): RedisOptions => ({ ...options, socketTimeout: timeoutMs });

/** A connection to `url` that waits at most `timeoutMs` for an answer (see redisOptions). */
export const openRedis = (url: string, timeoutMs: number, options: RedisOptions = {}): Redis => new Redis(url, redisOptions(timeoutMs, options));
