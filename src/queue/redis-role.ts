// A Redis that answers but cannot hold the job queue. In cluster mode (AWS ElastiCache or Azure
// Cache with clustering on, a node of a Redis Cluster): Bull's scripts touch several keys at once,
// which a cluster refuses unless they share a hash slot ("CROSSSLOT Keys in request don't hash to
// the same slot"), and a node answers only for its own slots ("MOVED 12575 10.0.0.3:6379"). A
// read-only replica (a managed service's reader endpoint, or a primary demoted by a failover that
// REDIS_URL still names): "READONLY You can't write against a read only replica". Measured by hand
// before, for each: /readyz said ready, every POST /v1/jobs answered 503 "the job queue is
// unreachable: <that error>", and the worker logged it with its stack every 5 s. So the services
// say what it is (when they connect, every 5 s, and when a command is refused so), /readyz fails
// its queue check, and a POST names it. A connection found on a replica is made anew every 5 s
// (followFailover), so one that a managed service's failover left on the demoted primary reaches
// the promoted one once REDIS_URL's name has moved.
import type { Redis } from 'ioredis';
import { QueueUnavailableError } from '../jobs/job-errors.js';
import { fullLine, isRedisFull } from './redis-memory.js';
import { isDemotedRefusal, redisServer } from './redis-connection.js';

/** What of an `INFO` answer makes its server unfit for the queue: cluster mode, or the replica role (with its primary). */
export function queueHolderTrouble(info: string): { kind: 'cluster' } | { kind: 'replica'; primary: string } | null {
  if (/^cluster_enabled:1\s*$/m.test(info)) return { kind: 'cluster' };
  if (!/^role:slave\s*$/m.test(info)) return null;
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '?';
  return { kind: 'replica', primary: `${field('master_host')}:${field('master_port')}` };
}

/** Whether `err` is Redis refusing a command for its cluster mode or replica role (or ending a blocked one as it turns replica). */
export const isRoleRefusal = (err: unknown): boolean =>
  err instanceof Error && (isDemotedRefusal(err) || /^(CROSSSLOT|MOVED|ASK|CLUSTERDOWN)\b/.test(err.message));

/** What the services say of a Redis that cannot hold the queue. */
function troubleLine(server: string, trouble: NonNullable<ReturnType<typeof queueHolderTrouble>>): string {
  if (trouble.kind === 'cluster') {
    return (
      `Redis at ${server} runs in cluster mode (cluster_enabled:1), which cannot hold the job queue: its commands touch several keys at once, which a cluster refuses (CROSSSLOT, MOVED). ` +
      "Point REDIS_URL at a Redis without cluster mode (a managed service's 'cluster mode disabled' kind, or a primary with replicas)"
    );
  }
  return (
    `Redis at ${server} is a read-only replica (of ${trouble.primary}), which cannot hold the job queue: it refuses writes (READONLY). ` +
    "Point REDIS_URL at the primary (a managed service's primary endpoint, which follows failovers; not its reader endpoint). " +
    'During a failover this passes by itself: connections are made anew every 5 s and follow a moved name'
  );
}

/** What makes the server at `server` unfit for the queue, by its `INFO` answer, in words; null when it is fit. */
const unfitLine = (server: string, info: string): string | null => {
  const trouble = queueHolderTrouble(info);
  return trouble && troubleLine(server, trouble);
};

/** How often the watchers read their Redis again (fit or not), and how often a connection on a replica is made anew. */
const RECHECK_MS = 5000;

/** When each connection found on a replica was last made anew (followFailover). */
const remadeAt = new WeakMap<Redis, number>();

/**
 * A connection that finds its server a replica is made anew, at most every RECHECK_MS: if a
 * failover moved REDIS_URL's name to the new primary, the new connection reaches it. A check
 * only reads (INFO, PING), which a replica answers, so redisOptions' reconnect on a refused write
 * never comes on a connection that only checks: /readyz kept saying "replica" after the failover,
 * and a load balancer that takes the API out of rotation for it sends it no write that would.
 */
function followFailover(redis: Redis): void {
  const now = Date.now();
  if (now - (remadeAt.get(redis) ?? 0) < RECHECK_MS) return;
  remadeAt.set(redis, now);
  redis.disconnect(true);
}

/** `redis`'s INFO answer; a connection on a replica is made anew (followFailover). Rejects when INFO goes unanswered. */
async function readInfo(redis: Redis): Promise<string> {
  const info = await redis.info();
  if (queueHolderTrouble(info)?.kind === 'replica') followFailover(redis);
  return info;
}

/** Whether `err` is Redis refusing REDIS_URL's database number (the SELECT of a database it does not have). */
export const isMissingDatabase = (err: unknown): boolean => err instanceof Error && /^ERR DB index is out of range/.test(err.message);

/**
 * Why `redis` cannot be in REDIS_URL's database, or null. A server with fewer databases (redis.conf
 * `databases`, 16 by default; many managed services offer only 0) refuses the SELECT that a
 * connection to /N sends, and ioredis goes on in database 0 with no more than an 'error' event:
 * measured before with /99, the API said ready and queued jobs in database 0 (another
 * deployment's, perhaps), and the worker logged the refusal with its stack on each connection.
 */
async function databaseTrouble(redis: Redis): Promise<string | null> {
  const db = Number(redis.options.db ?? 0);
  if (!db) return null;
  const refusal = await redis.select(db).then(
    () => null,
    (err: Error) => (isMissingDatabase(err) ? err.message : null),
  );
  return (
    refusal &&
    `REDIS_URL asks for database ${db}, which Redis at ${redisServer(redis)} does not have (${refusal}): it has fewer (redis.conf \`databases\`, 16 by default; many managed services offer only 0). ` +
      'Point REDIS_URL at a database it has (/0 always exists)'
  );
}

/** Throws the 503 of a POST when `redis` cannot be in REDIS_URL's database (databaseTrouble): ioredis would queue it in database 0. */
export async function assertDatabase(redis: Redis): Promise<void> {
  const line = await databaseTrouble(redis);
  if (line) throw new QueueUnavailableError(line, 'database');
}

/** unfitLine of `redis`'s server, or why its database cannot be used. Rejects when INFO goes unanswered. */
const unfitness = async (redis: Redis): Promise<string | null> => unfitLine(redisServer(redis), await readInfo(redis)) ?? (await databaseTrouble(redis));

/**
 * Throws why `redis`'s server cannot take the queue's commands now (cluster mode, a replica, full:
 * fullLine, or without REDIS_URL's database), from one INFO; nothing when it can, or hides INFO (a
 * managed service may rename it).
 */
export async function assertQueueWritable(redis: Redis): Promise<void> {
  const info = await readInfo(redis).catch(() => '');
  const server = redisServer(redis);
  const line = unfitLine(server, info) ?? fullLine(server, info) ?? (await databaseTrouble(redis));
  if (line) throw new Error(line);
}

/**
 * Checks `redis`'s server each time it connects, every RECHECK_MS after, and whenever `saw` is
 * given a refusal of its role: `say` gets the trouble once, `fit` once when it is gone (a replica
 * promoted, REDIS_URL's name moved). Checked while it is fit too: a failover demotes the server
 * under a connection that only reads and publishes, which a replica serves without complaint
 * (its messages reach only that server's subscribers), and a check finding it a replica makes it
 * anew (followFailover). Before, the API's own connection, which cancels go through, stayed on the
 * old server for as long as the API ran.
 */
export function watchQueueHolder(redis: Redis, say: (line: string) => void, fit: (line: string) => void = () => {}): { saw(err: unknown): boolean } {
  let said = false;
  // INFO unanswered (Redis out of reach, this process stopping) judges nothing: the next check does.
  const check = () =>
    void unfitness(redis).then(
      (line) => {
        if (line === null) {
          if (said) fit(`Redis at ${redisServer(redis)} can hold the job queue again`);
          said = false;
          return;
        }
        if (!said) say(line);
        said = true;
      },
      () => {},
    );
  const timer = setInterval(() => {
    if (redis.status === 'ready') check();
  }, RECHECK_MS);
  timer.unref();
  redis.once('end', () => clearInterval(timer));
  redis.on('ready', check);
  if (redis.status === 'ready') check();
  return {
    saw(err) {
      if (!isRoleRefusal(err) && !isMissingDatabase(err)) return false;
      if (!said) check();
      return true;
    },
  };
}

/** The 503 for a queue command that failed with `err`: Redis full, unfit for the queue, or out of reach. */
export function queueUnavailable(err: unknown): QueueUnavailableError {
  if (err instanceof QueueUnavailableError) return err;
  const message = (err as Error).message;
  const kind = isRedisFull(err) ? 'full' : /^READONLY\b/.test(message) ? 'replica' : isRoleRefusal(err) ? 'cluster' : 'unreachable';
  return new QueueUnavailableError(message, kind);
}
