// The reconciler repairs jobs whose row and queue entry disagree, so no job is stuck for ever:
//   - a `queued` row with no live queue entry (the API died between the insert and the enqueue,
//     Redis lost the entry, or the queue gave up on it): put it on the queue again;
//   - a `running` row whose entry is missing (Redis lost it: a restart without persistence) and
//     that its worker has not written for the grace period (a training worker writes it at least
//     every 5 s): its worker died too, so it goes back on the queue and the next worker resumes it
//     from its last checkpoint, as after any worker's death;
//   - a `running` row whose entry the queue failed or completed without the row hearing of it, or
//     a `cancelling` row whose entry is gone: no worker will finish it, so it ends `failed` with
//     QUEUE_ENTRY_LOST (or `cancelled`, if a cancel was pending). Its checkpoints stay.
// It runs in every API process, at start and then every RECONCILE_INTERVAL_MS, but only the one
// holding the leader lock acts. Rows changed in the last `graceMs` are left alone: the create
// that is about to enqueue, the claim that is about to update.
import { openRedis } from './redis-connection.js';
import { isRoleRefusal } from './redis-role.js';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import type { Settings } from '../config/settings.js';
import type { Prisma } from '../db/database.js';
import type { JobWake } from '../jobs/job-events.js';
import { endUnowned, listUnfinished, type UnfinishedJob } from '../jobs/job-lifecycle.js';
import { jobEventPublisher } from './job-event-bus.js';
import { LeaderLock } from './leader-lock.js';
import type { EntryState, QueueProducer } from './training-queue.js';
import type { Logger } from '../logger.js';

export interface ReconcileReport {
  requeued: string[];
  failed: string[];
  cancelled: string[];
  /** Staged artifact writes of crashed writers removed from the store. */
  garbage: number;
}

/** Uploads left unfinished longer than this are a crashed writer's. */
const ARTIFACT_GARBAGE_AGE_MS = 6 * 3600_000;

const gone = (state: EntryState) => state === null || state === 'completed' || state === 'failed';

/** One pass over the unfinished jobs (the leader's work; also called directly by tests). */
export async function reconcile(
  prisma: Prisma,
  queue: Pick<QueueProducer, 'entryState' | 'requeue'>,
  opts: { graceMs: number; log: Logger; artifacts?: ArtifactStore; wake?: JobWake },
): Promise<ReconcileReport> {
  const report: ReconcileReport = { requeued: [], failed: [], cancelled: [], garbage: 0 };
  for (const job of await listUnfinished(prisma, new Date(Date.now() - opts.graceMs))) {
    // One job's trouble (a locked entry, a lost connection) must not stop the others' repair.
    try {
      await reconcileJob(prisma, queue, job, report, opts.log, opts.wake);
    } catch (err) {
      opts.log.warn({ jobId: job.id, err }, 'reconciler: could not repair this job now; trying again next round');
    }
  }
  if (opts.artifacts) report.garbage = await opts.artifacts.collectGarbage(ARTIFACT_GARBAGE_AGE_MS);
  return report;
}

async function reconcileJob(
  prisma: Prisma,
  queue: Pick<QueueProducer, 'entryState' | 'requeue'>,
  job: UnfinishedJob,
  report: ReconcileReport,
  log: Logger,
  wake?: JobWake,
): Promise<void> {
  const state = await queue.entryState(job.id);
  if (!gone(state)) return;
  if (job.status === 'queued') {
    await queue.requeue(job.id);
    report.requeued.push(job.id);
    log.warn({ jobId: job.id, entry: state ?? 'missing' }, 'reconciler: queued job had no queue entry; enqueued it again');
    return;
  }
  if (job.status === 'running' && state === null) {
    await queue.requeue(job.id);
    report.requeued.push(job.id);
    log.warn(
      { jobId: job.id },
      'reconciler: running job had no queue entry and its worker stopped writing; enqueued it again to resume from its last checkpoint',
    );
    return;
  }
  const message =
    `the job's queue entry is ${state ?? 'missing'} while the job was ${job.status}, so no worker can finish it` +
    ' (Redis lost it, or the queue failed it unseen); its checkpoints are kept: a new job with init.fromJob starts from them';
  const ended = await endUnowned(prisma, job, 'QUEUE_ENTRY_LOST', message, wake);
  if (ended === 'failed') report.failed.push(job.id);
  if (ended === 'cancelled') report.cancelled.push(job.id);
  if (ended) log.error({ jobId: job.id, was: job.status, now: ended, code: 'QUEUE_ENTRY_LOST' }, `reconciler: ${message}`);
}

export interface ReconcilerDeps {
  settings: Settings;
  prisma: Prisma;
  queue: Pick<QueueProducer, 'entryState' | 'requeue'>;
  artifacts?: ArtifactStore;
  log: Logger;
  /** Default: 15 s. */
  graceMs?: number;
}

export interface Reconciler {
  /** Runs one pass if this process leads; null when another replica does. */
  runOnce(): Promise<ReconcileReport | null>;
  stop(): Promise<void>;
}

export function startReconciler(deps: ReconcilerDeps): Reconciler {
  const interval = deps.settings.reconcileIntervalMs;
  const redis = openRedis(deps.settings.redisUrl, deps.settings.redisTimeoutMs, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false });
  redis.on('error', () => {}); // Redis trouble shows in /readyz; the next round tries again.
  // Outlives a missed round, expires soon after the leader is gone.
  const wake = jobEventPublisher(redis, deps.settings.queuePrefix);
  const lock = new LeaderLock(redis, `${deps.settings.queuePrefix}:reconciler:leader`, interval * 3);
  let running: Promise<ReconcileReport | null> | null = null;
  let stopped = false;

  const runOnce = (): Promise<ReconcileReport | null> => {
    running ??= (async () => {
      if (stopped || redis.status !== 'ready') return null;
      if (!(await lock.acquire())) return null;
      const report = await reconcile(deps.prisma, deps.queue, { graceMs: deps.graceMs ?? 15_000, log: deps.log, artifacts: deps.artifacts, wake });
      if (report.requeued.length || report.failed.length || report.cancelled.length || report.garbage) {
        deps.log.info({ ...report }, 'reconciler: repaired jobs');
      }
      return report;
    })()
      .catch((err) => {
        // A Redis unfit for the queue is said by the API (watchQueueHolder): no stack each round.
        deps.log.warn(isRoleRefusal(err) ? { err: (err as Error).message } : { err }, 'reconciler: round failed; trying again next round');
        return null;
      })
      .finally(() => {
        running = null;
      });
    return running;
  };

  // At start (once Redis answers), then every interval.
  redis.once('ready', () => void runOnce());
  const timer = setInterval(() => void runOnce(), interval);
  timer.unref();

  return {
    runOnce,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await lock.release().catch(() => {});
      redis.disconnect();
    },
  };
}
