// JobService: create, read, list, cancel jobs and page their metrics. State changes go through
// src/jobs/job-lifecycle.ts, which holds the transition table and every conditional write.
import { randomUUID } from 'node:crypto';
import type { Prisma } from '../db/database.js';
import { DatasetPathError } from '../data/errors.js';
import { countClassFolders } from '../data/image-folder.js';
import { resolveUnderRoot } from '../data/safe-path.js';
import { JOB_WITH_MODEL } from '../db/model-rows.js';
import { admissionIssues, FEWEST_CLASSES, tooLargeMessage, type JobBudget } from './job-admission.js';
import { JobNotFoundError, JobQuotaError, JobStoreQuotaError, QueueUnavailableError, ServiceError, ValidationError, toIssues } from './job-errors.js';
import type { JobWake } from './job-events.js';
import {
  deleteFinished,
  discardUnqueued,
  findByIdempotencyKey,
  insertQueued,
  overActiveCap,
  requestCancel,
  requestResume,
  revokedKeyJobs,
} from './job-lifecycle.js';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { jobPrefix, modelPrefix } from '../artifacts/artifact-keys.js';
import { isTerminal, TERMINAL_STATUSES, type JobStatus } from './job-status.js';
import {
  JobEventWarningData,
  toJobView,
  toMetricPointView,
  WARNINGS_SHOWN,
  type CurveQuery,
  type DeletedJobs,
  type DeleteJobsQuery,
  type JobCurve,
  type JobView,
  type JobWarnings,
  type ListJobsQuery,
  type MetricsPage,
  type MetricsQuery,
} from './job-view.js';
import { TrainingConfig } from '../config/training-config.js';
import { createdBefore, NEWEST_FIRST } from '../db/keyset.js';
import { decodeCursor, encodeCursor, keysetPage } from './page-cursor.js';
import { withTimeout } from '../with-timeout.js';

export interface JobQueuePort {
  /**
   * Put the job on the training queue, behind every job of a lower `priority` (1, the default,
   * runs first; equal ones in order). Rejects when the queue is unreachable.
   */
  enqueue(jobId: string, priority?: number): Promise<void>;
  /** The priority a queued job was given (null: not on the queue). */
  priorityOf?(jobId: string): Promise<number | null>;
  /** Jobs handed out before this one (0: next; null: not waiting on the queue). */
  waitingAhead?(jobId: string): Promise<number | null>;
  /** Take a waiting job off the queue (best effort: the worker also checks the row). */
  remove(jobId: string): Promise<void>;
}

export interface CancelPort {
  /** Tell the worker running `jobId` to stop between steps. */
  publish(jobId: string): Promise<void>;
}

/** One JobEvent as an SSE stream sends it: `data` is its JSON payload text. */
export interface JobEventView {
  id: number;
  type: string;
  data: string;
}

/** How long a POST waits for the live workers' memory budgets before admitting on its own budget. */
const FLEET_BUDGET_WAIT_MS = 1000;

/** Time one bulk deletion request spends deleting before it returns its page early (see deleteFinishedBefore). */
export const BULK_DELETE_BUDGET_MS = 10_000;

export interface JobServiceDeps {
  prisma: Prisma;
  queue: JobQueuePort;
  cancel: CancelPort;
  /** This API's DATA_ROOT: where it looks for an image folder's class folders. */
  dataRoot: string;
  /**
   * Whether the workers read the same DATA_ROOT (under `qatserve serve`, or an `api` given
   * DATA_ROOT): then a folder missing there is a 400. Otherwise the datasets are on the workers'
   * machines: a folder this API cannot see is queued, and the worker that takes the job checks it
   * (DATASET_NOT_FOUND) and sizes it by its real classes (JOB_TOO_LARGE).
   */
  datasetsHere: boolean;
  /** Where the jobs' checkpoints and models are: a deleted job's files go from it. */
  artifacts: Pick<ArtifactStore, 'delete'>;
  /** The worker's memory and disk budget: a config estimated over it is a 400 JOB_TOO_LARGE. */
  budget?: JobBudget;
  /**
   * The memory budgets the workers publish (src/queue/worker-registry.ts listFleet; null for a
   * worker that publishes none): the live ones, and those away (restarting) for less than
   * WORKER_RESTART_GRACE_S. A job over the largest is refused at the POST (see fleetBudget).
   */
  fleetMemoryBudgets?: () => Promise<{ live: Array<number | null>; away: Array<number | null> }>;
  /** Wakes the event streams of a job after a change (Redis pub/sub); absent: they poll. */
  wake?: JobWake;
  /** The database runs its statements on this event loop (SQLite): a long deletion goes in chunks. */
  synchronousDb?: boolean;
}

/** Who creates a job (from the API's auth): recorded on the row. */
export interface JobOwner {
  /** The creating API key (null: auth off). */
  keyId: string | null;
  /** Whether the job's model may serve without a promotion (admin key or auth off). */
  autoServe: boolean;
  /** Queued + running jobs this key may have at once (0: no cap). */
  maxActiveJobs: number;
  /** Jobs of any status this key may have stored (0: no cap). */
  maxStoredJobs?: number;
}

const AUTH_OFF: JobOwner = { keyId: null, autoServe: true, maxActiveJobs: 0 };

/** The Idempotency-Key header: what clients commonly send (UUIDs, ULIDs, hashes), nothing more. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export class IdempotencyKeyReusedError extends ServiceError {
  constructor(key: string, jobId: string) {
    super(422, 'IDEMPOTENCY_KEY_REUSED', `Idempotency-Key "${key}" was used for job ${jobId} with a different config; use a new key for a new job`, [
      { path: 'headers.idempotency-key', message: 'already used with a different request body' },
    ]);
    this.name = 'IdempotencyKeyReusedError';
  }
}

export interface CreateOptions {
  /** The request's Idempotency-Key header: a retry with the same key and body returns the first job. */
  idempotencyKey?: string;
  /** Who creates the job (default: auth off). */
  owner?: JobOwner;
}

const chunks = <T>(xs: T[], size: number): T[][] => Array.from({ length: Math.ceil(xs.length / size) }, (_, i) => xs.slice(i * size, (i + 1) * size));

/** `first` (where a curve starts, its highest loss), stride, 2·stride, … up to `last`, and `last`. */
export function strideSteps(stride: number, first: number, last: number): number[] {
  const steps = Array.from({ length: Math.floor(last / stride) }, (_, i) => (i + 1) * stride).filter((s) => s > first);
  if (steps.at(-1) !== last && last > first) steps.push(last);
  return [first, ...steps];
}

export class JobService {
  constructor(private readonly deps: JobServiceDeps) {}

  /**
   * Validate, resolve defaults, admit (size), check dataset and init job, store the row, enqueue.
   * With an idempotency key, a retry of the same request by the same API key returns the job the
   * first one created.
   */
  async create(input: unknown, opts: CreateOptions = {}): Promise<JobView> {
    const owner = opts.owner ?? AUTH_OFF;
    const key = opts.idempotencyKey;
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
      throw new ValidationError('IDEMPOTENCY_KEY_INVALID', 'the Idempotency-Key header must be 1 to 255 visible ASCII characters', [
        { path: 'headers.idempotency-key', message: 'expected 1 to 255 visible ASCII characters' },
      ]);
    }
    // Idempotency keys are the client's: one API key's retries never meet another key's jobs.
    const storedKey = key === undefined ? undefined : owner.keyId ? `${owner.keyId}:${key}` : key;
    const parsed = TrainingConfig.safeParse(input);
    if (!parsed.success) {
      throw new ValidationError('CONFIG_INVALID', 'the training config is invalid', toIssues(parsed.error.issues));
    }
    const config = parsed.data;
    const folderClasses = config.dataset.type === 'imagefolder' ? await this.folderClasses(config.dataset.path) : undefined;
    if (this.deps.budget) {
      const issues = admissionIssues(config, await this.fleetBudget(this.deps.budget), folderClasses);
      if (issues.length) throw new ValidationError('JOB_TOO_LARGE', tooLargeMessage(issues), issues);
    }
    if (storedKey !== undefined) {
      const earlier = await findByIdempotencyKey(this.deps.prisma, storedKey);
      if (earlier) return this.replay(earlier, config, key!);
    }
    const { row, created } = await insertQueued(
      this.deps.prisma,
      {
        id: randomUUID(),
        name: config.name,
        config,
        idempotencyKey: storedKey,
        createdByKeyId: owner.keyId,
        autoServe: owner.autoServe,
      },
      this.deps.wake,
    );
    if (!created) return this.replay(row, config, key!);
    if (owner.keyId) await this.enforceCaps(row.id, owner.keyId, owner.maxActiveJobs, owner.maxStoredJobs ?? 0);
    try {
      await this.deps.queue.enqueue(row.id, await this.fairPriority(row.id, owner.keyId ?? null));
    } catch (err) {
      // Nothing was created: a retry (with the same key, too) starts afresh. Should this delete
      // fail as well, the reconciler finds the queued row without a queue entry and enqueues it.
      await discardUnqueued(this.deps.prisma, row.id).catch(() => {});
      throw err;
    }
    return toJobView(row);
  }

  /**
   * The caps on a key's active and stored jobs, safe across API replicas: the row is written first,
   * then the key's jobs are counted, this one included. Over a cap, it is removed (never enqueued)
   * and the request refused. Of two racing creates the later check always sees both rows, so a cap
   * is never exceeded (at worst both are refused and the client retries); the active count is taken
   * under the key's lock, so a resume of the key's in flight is counted too.
   */
  private async enforceCaps(id: string, keyId: string, maxActive: number, maxStored: number): Promise<void> {
    const mine = { createdByKeyId: keyId };
    if (maxActive > 0 && (await overActiveCap(this.deps.prisma, keyId, maxActive))) {
      await discardUnqueued(this.deps.prisma, id);
      throw new JobQuotaError(maxActive);
    }
    // Without it one key posting and cancelling jobs within its rate limit stored 286 a minute.
    if (maxStored > 0 && (await this.deps.prisma.trainingJob.count({ where: mine })) > maxStored) {
      await discardUnqueued(this.deps.prisma, id);
      throw new JobStoreQuotaError(maxStored);
    }
  }

  /**
   * Interleaves API keys on the queue: a job waits behind as many of each other key's jobs as its
   * own key has queued ahead of it, so one key's backlog does not hold up another key's first job
   * (a key used to queue up to MAX_ACTIVE_JOBS_PER_KEY jobs of a day each ahead of everyone). Never
   * below the key's newest queued job's priority, so each key's own jobs run in the order posted.
   * Jobs created with auth off count as one key.
   */
  private async fairPriority(id: string, keyId: string | null): Promise<number> {
    const queued = { createdByKeyId: keyId, status: 'queued', id: { not: id } };
    const ahead = await this.deps.prisma.trainingJob.count({ where: queued });
    if (ahead === 0) return 1;
    const newest = await this.deps.prisma.trainingJob.findFirst({ where: queued, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }], select: { id: true } });
    const newestPriority = newest && this.deps.queue.priorityOf ? await this.deps.queue.priorityOf(newest.id).catch(() => null) : null;
    return Math.max(1 + ahead, newestPriority ?? 1);
  }

  /**
   * An image folder's class folders as this API sees them (for admission), or undefined when it
   * cannot list them. A path it refuses is a 400 naming `dataset.path`.
   */
  private async folderClasses(relPath: string): Promise<number | undefined> {
    let folder: string;
    try {
      folder = await resolveUnderRoot(this.deps.dataRoot, relPath);
    } catch (err) {
      if (!(err instanceof DatasetPathError)) throw err;
      // Not on this machine: the worker has it, or fails the job saying it has not. The fewest
      // classes a data set has, so that admission here refuses only what no folder would fit.
      if (err.code === 'DATASET_NOT_FOUND' && !this.deps.datasetsHere) return FEWEST_CLASSES;
      throw new ValidationError(err.code, err.message, [{ path: 'dataset.path', message: err.message }]);
    }
    // Counted rather than assumed to be 1,000: a folder of few classes has a smaller head, and
    // room for a larger batch (1.0@224 at batch 33 fits with 10 classes, not with 1,000).
    return (await countClassFolders(this.deps.dataRoot, folder)) ?? undefined;
  }

  /** Where a job stands on the queue: jobs ahead of it while it waits there, else null. */
  async queuePosition(id: string): Promise<{ status: JobStatus; position: number | null }> {
    const row = await this.deps.prisma.trainingJob.findUnique({ where: { id }, select: { status: true } });
    if (!row) throw new JobNotFoundError(id);
    const status = row.status as JobStatus;
    if (status !== 'queued' || !this.deps.queue.waitingAhead) return { status, position: null };
    try {
      return { status, position: await this.deps.queue.waitingAhead(id) };
    } catch (err) {
      throw err instanceof QueueUnavailableError ? err : new QueueUnavailableError((err as Error).message);
    }
  }

  /** The API key that created a job (null: auth was off). */
  async createdBy(id: string): Promise<string | null> {
    const row = await this.deps.prisma.trainingJob.findUnique({ where: { id }, select: { createdByKeyId: true } });
    if (!row) throw new JobNotFoundError(id);
    return row.createdByKeyId;
  }

  private replay(row: Parameters<typeof toJobView>[0], config: TrainingConfig, key: string): JobView {
    if (row.config !== JSON.stringify(config)) throw new IdempotencyKeyReusedError(key, row.id);
    return toJobView(row);
  }

  async get(id: string): Promise<JobView> {
    const row = await this.deps.prisma.trainingJob.findUnique({ where: { id }, include: JOB_WITH_MODEL });
    if (!row) throw new JobNotFoundError(id);
    return toJobView(row);
  }

  /** The texts of the job's warnings (its row only counts them). */
  async warnings(id: string): Promise<JobWarnings> {
    const row = await this.deps.prisma.trainingJob.findUnique({ where: { id }, select: { warnings: true } });
    if (!row) throw new JobNotFoundError(id);
    const events = await this.deps.prisma.jobEvent.findMany({
      where: { jobId: id, type: 'warning' },
      orderBy: { id: 'asc' },
      take: WARNINGS_SHOWN,
      select: { payload: true, createdAt: true },
    });
    return {
      warnings: events.map((e) => ({ ...JobEventWarningData.parse(JSON.parse(e.payload)), at: e.createdAt.toISOString() })),
      total: row.warnings,
    };
  }

  /** Newest first; the cursor is the (createdAt, id) of the last job on the previous page. */
  async list(q: ListJobsQuery): Promise<{ jobs: JobView[]; nextCursor: string | null }> {
    const rows = await this.deps.prisma.trainingJob.findMany({
      where: { ...(q.status ? { status: q.status } : {}), ...createdBefore(q.cursor ? decodeCursor(q.cursor) : undefined) },
      orderBy: NEWEST_FIRST,
      take: q.limit + 1,
      include: JOB_WITH_MODEL,
    });
    const { page, nextCursor } = keysetPage(rows, q.limit);
    return { jobs: page.map(toJobView), nextCursor };
  }

  /**
   * A job's metric points, by step (`after`) or by revision (`cursor`). Revisions of one job are
   * handed out under its row lock (job-lifecycle.ts), so they become visible in order and a
   * cursor never skips a point that commits later.
   */
  async metrics(id: string, q: MetricsQuery): Promise<MetricsPage> {
    if (q.after !== undefined && q.cursor !== undefined) {
      throw new ValidationError('METRICS_QUERY_CONFLICT', 'pass either `after` (a step) or `cursor` (a revision), not both', [
        { path: 'query.cursor', message: 'not allowed together with after' },
      ]);
    }
    await this.requireJob(id);
    if (q.cursor !== undefined) return this.metricsByRevision(id, q.cursor, q.limit);
    const rows = await this.deps.prisma.metricPoint.findMany({ where: { jobId: id, step: { gt: q.after ?? 0 } }, orderBy: { step: 'asc' }, take: q.limit + 1 });
    const page = rows.slice(0, q.limit);
    const more = rows.length > q.limit;
    return { points: page.map(toMetricPointView), nextAfter: more ? page[page.length - 1].step : null, nextCursor: null, more };
  }

  /**
   * The budget a new job must fit: this API's, and no more than the largest of the workers' (each
   * held to its machine's memory), so a job no worker can hold is a 400 now, not a failure on a
   * worker later. A worker away for less than WORKER_RESTART_GRACE_S counts: it is likely
   * restarting. With no worker, one that publishes no budget (older), or Redis unreachable, this
   * API's budget alone: the workers check again when they take the job.
   */
  private async fleetBudget(own: JobBudget): Promise<JobBudget> {
    if (!this.deps.fleetMemoryBudgets) return own;
    // Redis being slow or away must not hold the POST: the workers check again.
    const fleet = await withTimeout(this.deps.fleetMemoryBudgets(), FLEET_BUDGET_WAIT_MS, "the workers' budgets").catch(() => null);
    if (!fleet) return own;
    const budgets = [...fleet.live, ...fleet.away];
    if (!budgets.length || budgets.some((b) => b === null)) return own;
    const largest = Math.max(...(budgets as number[]));
    if (largest >= own.memoryBytes) return own;
    const s = (n: number) => (n === 1 ? '' : 's');
    const { live, away } = fleet;
    const awayText = away.length ? ` and the ${away.length} worker${s(away.length)} away for less than WORKER_RESTART_GRACE_S` : '';
    return {
      ...own,
      memoryBytes: largest,
      memoryNote: `the largest budget of the ${live.length} live worker${s(live.length)}${awayText}, each held to its machine's memory`,
    };
  }

  /** The 404 of the routes that read a job's history: an unknown id must not read as a job without one. */
  private async requireJob(id: string): Promise<void> {
    if (!(await this.deps.prisma.trainingJob.findUnique({ where: { id }, select: { id: true } }))) throw new JobNotFoundError(id);
  }

  /**
   * Points with a revision above `cursor`, whole revisions only: the next cursor is the last
   * point's revision, so a page that stopped inside one write's points (the worker writes a
   * second's steps at once) would lose the rest of them. A page ends before a revision that does
   * not fit, and holds one whole revision however long if even the first does not.
   */
  private async metricsByRevision(jobId: string, cursor: number, limit: number): Promise<MetricsPage> {
    const db = this.deps.prisma;
    const rows = await db.metricPoint.findMany({
      where: { jobId, revision: { gt: cursor } },
      orderBy: [{ revision: 'asc' }, { step: 'asc' }],
      take: limit + 1,
    });
    let page = rows.slice(0, limit);
    let more = rows.length > limit;
    const next = rows[limit];
    if (next && next.revision === page[page.length - 1].revision) {
      const split = next.revision;
      const whole = page.findIndex((r) => r.revision === split);
      if (whole > 0) {
        page = page.slice(0, whole);
      } else {
        page = await db.metricPoint.findMany({ where: { jobId, revision: split }, orderBy: { step: 'asc' } });
        more = (await db.metricPoint.findFirst({ where: { jobId, revision: { gt: split } }, select: { step: true } })) !== null;
      }
    }
    return { points: page.map(toMetricPointView), nextAfter: null, nextCursor: page.at(-1)?.revision ?? cursor, more };
  }

  /**
   * A long job's curve in a bounded number of points (the dashboard's view of a job with more
   * steps than it would replay event by event): index look-ups only, the stride's steps by their
   * (jobId, step) key and the scored points by (jobId, top1). The newest event id is read first,
   * so the points hold everything up to it.
   */
  async curve(id: string, q: CurveQuery): Promise<JobCurve> {
    const db = this.deps.prisma;
    await this.requireJob(id);
    const lastEvent = await db.jobEvent.findFirst({ where: { jobId: id }, orderBy: { id: 'desc' }, select: { id: true } });
    const first = await db.metricPoint.findFirst({ where: { jobId: id }, orderBy: { step: 'asc' }, select: { step: true } });
    const last = await db.metricPoint.findFirst({ where: { jobId: id }, orderBy: { step: 'desc' }, select: { step: true } });
    const stride = Math.max(1, Math.ceil((last?.step ?? 0) / q.points));
    const rows =
      stride === 1
        ? await db.metricPoint.findMany({ where: { jobId: id }, orderBy: { step: 'asc' } })
        : [
            // Prisma refuses more than 999 parameters to one SQLite query (P2029).
            ...(
              await Promise.all(
                chunks(strideSteps(stride, first!.step, last!.step), 500).map((steps) =>
                  db.metricPoint.findMany({ where: { jobId: id, step: { in: steps } } }),
                ),
              )
            ).flat(),
            ...(await db.metricPoint.findMany({ where: { jobId: id, top1: { not: null } } })),
          ];
    const byStep = new Map(rows.map((r) => [r.step, r]));
    const points = [...byStep.values()].sort((a, b) => a.step - b.step).map(toMetricPointView);
    return { points, stride, lastEventId: lastEvent?.id ?? null };
  }

  /**
   * A job's events after event id `afterId`, oldest first, and whether the job had finished before
   * they were read (its status is read first: every event of a finished job is then in the list,
   * so a stream that has sent them all may end).
   */
  async eventsSince(id: string, afterId: number, limit: number): Promise<{ finished: boolean; events: JobEventView[] }> {
    const job = await this.deps.prisma.trainingJob.findUnique({ where: { id }, select: { status: true } });
    if (!job) throw new JobNotFoundError(id);
    const rows = await this.deps.prisma.jobEvent.findMany({ where: { jobId: id, id: { gt: afterId } }, orderBy: { id: 'asc' }, take: limit });
    return { finished: isTerminal(job.status), events: rows.map((r) => ({ id: r.id, type: r.type, data: r.payload })) };
  }

  /**
   * queued -> cancelled (and off the queue); running -> cancelling (the worker hears it through
   * Redis, or at its next step through the row, and stops with a checkpoint). Terminal: 409.
   */
  async cancel(id: string): Promise<JobView> {
    const { to } = await requestCancel(this.deps.prisma, id, this.deps.wake);
    if (to === 'cancelled') await this.deps.queue.remove(id).catch(() => {});
    if (to === 'cancelling') await this.deps.cancel.publish(id).catch(() => {});
    return this.get(id);
  }

  /**
   * A failed or cancelled job back on the queue, behind its key's queued jobs as a new one would be;
   * the next worker resumes it from its newest checkpoint. Over the creating key's cap of active
   * jobs: JobQuotaError, nothing changed. Should the queue not answer, the job stays `queued` and
   * the reconciler puts it on the queue once it does.
   */
  async resume(id: string, maxActiveJobs: number): Promise<JobView> {
    const resumed = await requestResume(this.deps.prisma, id, maxActiveJobs, this.deps.wake);
    if ('overCap' in resumed) throw new JobQuotaError(maxActiveJobs);
    try {
      // A failed job's queue entry is kept (the newest 1000): the same id is not added while it is there.
      await this.deps.queue.remove(id);
      await this.deps.queue.enqueue(id, await this.fairPriority(id, resumed.keyId));
    } catch {
      // Left to the reconciler (a queued row without a live entry).
    }
    return this.get(id);
  }

  /** What a key's revocation leaves going (revokedKeyJobs), cancelling its jobs first when asked. */
  async jobsOfRevokedKey(keyId: string, cancel: boolean): Promise<{ cancelled: string[]; goingOn: number }> {
    const { cancelled, goingOn } = await revokedKeyJobs(this.deps.prisma, keyId, cancel ? (id) => this.cancel(id) : undefined);
    return { cancelled, goingOn: goingOn.length };
  }

  /**
   * Deletes a finished job, its records and its files (checkpoints, model). The rows go first, in
   * one transaction; a file that then cannot be deleted is reported in `leftPrefixes` (nothing
   * points at it any more).
   */
  async delete(id: string): Promise<{ modelId: string | null; objectsDeleted: number; leftPrefixes: string[] }> {
    const { modelId } = await deleteFinished(this.deps.prisma, id, { historyInChunks: this.deps.synchronousDb });
    const prefixes = [jobPrefix(id), ...(modelId ? [modelPrefix(modelId)] : [])];
    const results = await Promise.allSettled(prefixes.map((p) => this.deps.artifacts.delete(p)));
    let objectsDeleted = 0;
    const leftPrefixes: string[] = [];
    results.forEach((r, i) => (r.status === 'fulfilled' ? (objectsDeleted += r.value) : leftPrefixes.push(prefixes[i])));
    return { modelId, objectsDeleted, leftPrefixes };
  }

  /**
   * A page of the finished jobs created before `q.before` (of `keyId` only, unless null), each
   * deleted as `delete` does; a job it refuses (its model serves, an unfinished job starts from it)
   * is kept and said why, and the cursor moves past it. Past `budgetMs` of deleting, the page ends
   * early, its cursor after the last job it took: one job of 1000 epochs takes seconds (1.9M points),
   * and a page of 100 of them would have held its request for minutes.
   */
  async deleteFinishedBefore(
    q: DeleteJobsQuery,
    keyId: string | null,
    budgetMs = BULK_DELETE_BUDGET_MS,
  ): Promise<DeletedJobs & { models: string[]; leftPrefixes: string[] }> {
    const started = performance.now();
    const rows = await this.deps.prisma.trainingJob.findMany({
      where: {
        AND: [
          { status: q.status ?? { in: [...TERMINAL_STATUSES] }, createdAt: { lt: new Date(q.before) } },
          keyId === null ? {} : { createdByKeyId: keyId },
          createdBefore(q.cursor ? decodeCursor(q.cursor) : undefined),
        ],
      },
      orderBy: NEWEST_FIRST,
      take: q.limit + 1,
      select: { id: true, createdAt: true },
    });
    const { page, nextCursor } = keysetPage(rows, q.limit);
    const out: DeletedJobs & { models: string[]; leftPrefixes: string[] } = { deleted: [], kept: [], nextCursor, models: [], leftPrefixes: [] };
    for (const [i, { id, createdAt }] of page.entries()) {
      try {
        const { modelId, leftPrefixes } = await this.delete(id);
        out.deleted.push(id);
        if (modelId) out.models.push(modelId);
        out.leftPrefixes.push(...leftPrefixes);
      } catch (err) {
        // JobNotFoundError: deleted meanwhile by another request.
        if (err instanceof ServiceError && err.statusCode === 409) out.kept.push({ id, code: err.code, message: err.message });
        else if (!(err instanceof JobNotFoundError)) throw err;
      }
      if (i < page.length - 1 && performance.now() - started >= budgetMs) {
        out.nextCursor = encodeCursor(createdAt, id);
        break;
      }
    }
    return out;
  }

  async countByStatus(): Promise<Record<string, number>> {
    const groups = await this.deps.prisma.trainingJob.groupBy({ by: ['status'], _count: { _all: true } });
    return Object.fromEntries(groups.map((g) => [g.status, g._count._all]));
  }
}
