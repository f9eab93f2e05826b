// Which workers a deployment has, and what each is doing. Machines share only PostgreSQL and
// Redis, so a job that sits `queued` said nothing of why: no worker running at all, every worker
// busy, or a worker waiting for disk space all looked the same. Each worker now keeps a key in
// Redis with its state, refreshed every WORKER_BEAT_MS and expiring after WORKER_TTL_S, so one that
// dies drops out of the list by itself; any API replica lists them (GET /v1/workers, /metrics).
import { createHash } from 'node:crypto';
import os from 'node:os';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { diskSpace } from './disk-room.js';
import { parseJsonAs } from '../parse-json.js';

export const WORKER_STATES = ['idle', 'training', 'waiting-for-disk'] as const;
export type WorkerState = (typeof WORKER_STATES)[number];

export const WorkerView = z.object({
  /** `<host>:<pid>`. */
  id: z.string(),
  host: z.string(),
  pid: z.number().int(),
  state: z.enum(WORKER_STATES),
  /** The job it trains (`training`), else null. */
  jobId: z.string().nullable(),
  /** Why it takes no jobs (`waiting-for-disk`), else null. */
  reason: z.string().nullable(),
  trainThreads: z.number().int(),
  /**
   * The largest estimated job heap it runs: JOB_MEMORY_BUDGET_MB, held to its machine's memory.
   * Absent from workers before the thirty-sixth session.
   */
  memoryBudgetBytes: z.number().optional(),
  /**
   * Its machine and DATA_ROOT, hashed: a worker that restarts comes back in the same seat (with a
   * new id), and stands for its former self in listFleet. Absent before the thirty-eighth session.
   */
  seat: z.string().optional(),
  /** Its DATA_DIR's disk, as of `seenAt`. */
  disk: z.object({ freeBytes: z.number(), totalBytes: z.number() }),
  startedAt: z.iso.datetime(),
  /** In this state since. */
  since: z.iso.datetime(),
  /** Its last word: every 5 s; a worker not heard from for 20 s is no longer listed. */
  seenAt: z.iso.datetime(),
});
export type WorkerView = z.infer<typeof WorkerView>;

export const WorkerList = z.object({
  /** The live workers: heard from in the last WORKER_TTL_S (20 s). */
  workers: z.array(WorkerView),
  /**
   * Workers away: not live, but heard from within WORKER_RESTART_GRACE_S (restarting, or gone); a
   * job only they can run waits for them. Each as its last entry said (`seenAt`: when).
   */
  away: z.array(WorkerView),
});
export type WorkerList = z.infer<typeof WorkerList>;

/** Workers by state, every state present (0 when none is in it). */
export function countByState(workers: ReadonlyArray<{ state: WorkerState }>): Record<WorkerState, number> {
  const counts = Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<WorkerState, number>;
  for (const w of workers) counts[w.state]++;
  return counts;
}

export const WORKER_BEAT_MS = 5000;
export const WORKER_TTL_S = 20;
/**
 * How long a worker's last entry outlives it (the most WORKER_RESTART_GRACE_S may ask for): a
 * worker that restarts, or is redeployed, still counts for the jobs only it can run.
 */
export const WORKER_SEEN_TTL_S = 24 * 3600;

/**
 * Ids whose last beat is older than this are not looked up for the live list (their entries
 * expired 20 s after it): it bounds the lookup, not liveness.
 */
const LIVE_LOOKUP_MS = 5 * 60_000;

/**
 * Redis's clock, in epoch ms. Every time in the registry is on it: machines' own clocks differ (a
 * worker whose clock ran 10 minutes behind scored its beats out of the lookup window above, and was
 * missing from GET /v1/workers and from the fleet a job waits for while it trained jobs), and Redis
 * is the one clock all of a deployment's machines read alike.
 */
export async function redisClock(redis: Redis): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

const keyPrefix = (queuePrefix: string) => `${queuePrefix}:workers:`;
const seenPrefix = (queuePrefix: string) => `${queuePrefix}:workers-seen:`;
/**
 * Every worker id by the time of its last beat. Listing reads it instead of scanning for the
 * entries: a SCAN walks the whole keyspace (rate-limit counters, queue entries), 99-143 ms per
 * listing with 100,000 other keys against 0.5 ms (bench/fleet-list.ts), and a POST /v1/jobs lists
 * the workers.
 */
const indexKey = (queuePrefix: string) => `${queuePrefix}:workers-index`;

/**
 * Writes a worker's entry: its live one (expiring WORKER_TTL_S after this) unless `live` is
 * false, its last-seen copy, and its place in the index. The beacon's write; tests write workers
 * of other machines with it.
 */
export async function writeEntry(redis: Redis, queuePrefix: string, view: WorkerView, live = true): Promise<void> {
  const entry = JSON.stringify(view);
  const now = Date.parse(view.seenAt);
  const tx = redis.multi();
  if (live) tx.set(keyPrefix(queuePrefix) + view.id, entry, 'EX', WORKER_TTL_S);
  await tx
    .set(seenPrefix(queuePrefix) + view.id, entry, 'EX', WORKER_SEEN_TTL_S)
    .zadd(indexKey(queuePrefix), Date.parse(view.seenAt), view.id)
    .zremrangebyscore(indexKey(queuePrefix), '-inf', now - WORKER_SEEN_TTL_S * 1000)
    .exec();
}

/** The live workers, and those `away`: not live, but heard from within the last `graceMs`; each by id. */
export interface Fleet {
  live: WorkerView[];
  away: WorkerView[];
}

/**
 * The deployment's workers that may run a job: the live ones, and those away for less than
 * `graceMs` (WORKER_RESTART_GRACE_S). A worker that restarts drops off the live list for the
 * seconds it takes (at once, on a graceful stop); a job only it can run waits for it instead of
 * failing on the first worker that takes it. As of `at` (epoch ms; default: now on Redis's clock).
 */
export async function listFleet(redis: Redis, queuePrefix: string, graceMs: number, at?: number): Promise<Fleet> {
  const now = at ?? (await redisClock(redis));
  const ids = await indexedSince(redis, queuePrefix, now - Math.max(graceMs, LIVE_LOOKUP_MS));
  const live = await readEntries(redis, keyPrefix(queuePrefix), ids);
  if (graceMs <= 0) return { live, away: [] };
  const liveIds = new Set(live.map((w) => w.id));
  const liveSeats = new Set(live.map((w) => w.seat));
  const seen = await readEntries(
    redis,
    seenPrefix(queuePrefix),
    ids.filter((id) => !liveIds.has(id)),
  );
  // A live worker in an away one's seat is that worker restarted: what it lacks, its former self lacked.
  const away = seen.filter((w) => !(w.seat && liveSeats.has(w.seat)) && now - Date.parse(w.seenAt) <= graceMs);
  return { live, away };
}

/** The memory budgets of listFleet's workers (null: a worker from before budgets were published). */
export async function fleetBudgets(redis: Redis, queuePrefix: string, graceMs: number): Promise<{ live: Array<number | null>; away: Array<number | null> }> {
  const { live, away } = await listFleet(redis, queuePrefix, graceMs);
  const budget = (w: WorkerView) => w.memoryBudgetBytes ?? null;
  return { live: live.map(budget), away: away.map(budget) };
}

const indexedSince = (redis: Redis, queuePrefix: string, sinceMs: number): Promise<string[]> => redis.zrangebyscore(indexKey(queuePrefix), sinceMs, '+inf');

/** The entries under `prefix` of `ids` that exist and parse, by id. */
async function readEntries(redis: Redis, prefix: string, ids: string[]): Promise<WorkerView[]> {
  const workers: WorkerView[] = [];
  for (let i = 0; i < ids.length; i += 500) {
    for (const raw of await redis.mget(ids.slice(i, i + 500).map((id) => prefix + id))) {
      const worker = parseJsonAs(WorkerView, raw);
      if (worker) workers.push(worker);
    }
  }
  return workers.sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * A worker's entry: `set` on every change of state, refreshed every WORKER_BEAT_MS, removed on a
 * graceful stop (its last-seen copy stays: see listFleet). Redis trouble costs only the entry (it
 * expires); training never waits for it.
 */
export class WorkerBeacon {
  private state: WorkerState = 'idle';
  private jobId: string | null = null;
  private reason: string | null = null;
  /** Epoch ms on this machine's clock; written on Redis's (see write). */
  private readonly startedAt = Date.now();
  private since = this.startedAt;
  /** `<host>:<pid>`, as listed. */
  readonly id = `${os.hostname()}:${process.pid}`;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Writes one at a time, each of the state as it is then: an older one never lands last. */
  private writes = Promise.resolve();
  /** Its machine and DATA_ROOT, hashed (WorkerView.seat). */
  private readonly seat: string;

  constructor(
    private readonly redis: Redis,
    private readonly queuePrefix: string,
    private readonly opts: { dataDir: string; dataRoot: string; trainThreads: number; memoryBudgetBytes?: number; onError?: (err: unknown) => void },
  ) {
    this.seat = createHash('sha256').update(`${os.hostname()}\0${opts.dataRoot}`).digest('hex').slice(0, 16);
  }

  start(): void {
    this.timer ??= setInterval(() => void this.publish(), WORKER_BEAT_MS);
    this.timer.unref();
    void this.publish();
  }

  set(state: WorkerState, detail: { jobId?: string; reason?: string } = {}): void {
    if (state !== this.state || (detail.jobId ?? null) !== this.jobId) this.since = Date.now();
    this.state = state;
    this.jobId = detail.jobId ?? null;
    this.reason = detail.reason ?? null;
    void this.publish();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.writes;
    await this.redis.del(keyPrefix(this.queuePrefix) + this.id).catch(() => {});
  }

  private publish(): Promise<void> {
    this.writes = this.writes.then(() => this.write());
    return this.writes;
  }

  private async write(): Promise<void> {
    if (this.stopped) return;
    try {
      const disk = await diskSpace(this.opts.dataDir);
      const now = await redisClock(this.redis);
      // This machine's times moved onto Redis's clock, as every reader compares them with it; in
      // whole seconds, so a machine in step writes its own times and a round trip's jitter moves nothing.
      const skewMs = Math.round((now - Date.now()) / 1000) * 1000;
      const onRedisClock = (localMs: number) => new Date(localMs + skewMs).toISOString();
      const view: WorkerView = {
        id: this.id,
        host: os.hostname(),
        pid: process.pid,
        state: this.state,
        jobId: this.jobId,
        reason: this.reason,
        trainThreads: this.opts.trainThreads,
        memoryBudgetBytes: this.opts.memoryBudgetBytes,
        seat: this.seat,
        disk,
        startedAt: onRedisClock(this.startedAt),
        since: onRedisClock(this.since),
        seenAt: new Date(now).toISOString(),
      };
      await writeEntry(this.redis, this.queuePrefix, view);
    } catch (err) {
      this.opts.onError?.(err);
    }
  }
}
