// The job lifecycle, with one owner in code: the state-transition table, and every write that
// changes a job's state or records its progress. The database row is the truth. Every write is
// conditional ("only if the job is still in state X", and for a worker "only if I still own it"),
// so when the API, workers and the reconciler race on one job, exactly one of them wins.
//
// Ownership (fencing): claiming a job writes a fresh owner token. Every later write of that
// worker — progress, metric points, checkpoints, warnings, the outcome — runs in a transaction
// that first updates the job row WHERE ownerToken = its token. A worker whose job was claimed by
// another (its queue lock expired while it still ran) finds that condition false, writes nothing,
// and stops: OwnershipLostError. On PostgreSQL that first update also locks the row, so a claim
// waits for an owner's write in flight and the owner's next write sees the new token.
//
// Each write also raises the job's revision and records its JobEvents in the same transaction
// (src/jobs/job-events.ts); after the commit, `wake` tells the API replicas' event streams.
import { randomUUID } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Prisma, Tx } from '../db/database.js';
import { JOB_WITH_MODEL, recordJobModel, servingModel, type NewModel } from '../db/model-rows.js';
import { InitJobInvalidError, JobInUseError, JobNotFoundError, JobStateError, toIssues } from './job-errors.js';
import { trainingEndsAt, type RunStart } from './training-eta.js';
import { bumpRevision, noteWrite, recordEvents, statusEvent, type JobWake } from './job-events.js';
import { toMetricPointView, type JobDataset, type JobEventProgressData, type JobEventWarningData, type JobPhase } from './job-view.js';
import { JOB_STATUSES, TERMINAL_STATUSES, UNFINISHED_STATUSES, isTerminal, type JobStatus } from './job-status.js';
import { TrainingConfig } from '../config/training-config.js';
import { redact } from '../redact.js';

/** Every transition a job can make: from which states, to which, made by whom. */
export const TRANSITIONS = {
  create: { from: [], to: 'queued', by: 'api' },
  claim: { from: ['queued', 'running'], to: 'running', by: 'worker (from running: the previous owner lost its queue lock and is fenced out)' },
  cancelQueued: { from: ['queued'], to: 'cancelled', by: 'api' },
  requestCancel: { from: ['running'], to: 'cancelling', by: 'api (the owner stops between steps)' },
  handBack: { from: ['running'], to: 'queued', by: 'owner shutting down or out of disk (the next worker resumes)' },
  stop: { from: ['running', 'cancelling'], to: 'cancelled', by: 'owner' },
  succeed: { from: ['running'], to: 'succeeded', by: 'owner, with the Model row' },
  fail: { from: ['running', 'cancelling'], to: 'failed', by: 'owner (training or export error, JOB_TIMEOUT)' },
  resume: { from: ['failed', 'cancelled'], to: 'queued', by: 'api (the next worker resumes it from its newest checkpoint)' },
  cancelUnowned: { from: ['cancelling'], to: 'cancelled', by: 'a claim or the reconciler, when the owner is gone' },
  failUnowned: {
    from: ['queued', 'running', 'cancelling'],
    to: 'failed',
    by: "the queue (WORKER_LOST), the reconciler (QUEUE_ENTRY_LOST), a claim (CONFIG_INVALID) or a worker without the job's image folder when no other live worker may have it (DATASET_NOT_FOUND)",
  },
} as const satisfies Record<string, { from: readonly JobStatus[]; to: JobStatus; by: string }>;

export type Transition = keyof typeof TRANSITIONS;

/** The states a job may move to from `status`. */
export function nextStates(status: JobStatus): JobStatus[] {
  const out = new Set<JobStatus>();
  for (const t of Object.values(TRANSITIONS)) if ((t.from as readonly JobStatus[]).includes(status)) out.add(t.to);
  return JOB_STATUSES.filter((s) => out.has(s));
}

const from = (t: Transition) => ({ in: [...TRANSITIONS[t].from] as string[] });

export class OwnershipLostError extends Error {
  readonly code = 'OWNERSHIP_LOST';
  constructor(readonly jobId: string) {
    super(`job ${jobId} is no longer owned by this worker (another worker claimed it, or it was finished meanwhile)`);
    this.name = 'OwnershipLostError';
  }
}

// ---- API side ------------------------------------------------------------------------------------

export interface NewJob {
  id: string;
  name: string;
  config: TrainingConfig;
  idempotencyKey?: string | null;
  /** The API key that created the job (null: auth off). */
  createdByKeyId?: string | null;
  /** Whether its model may serve without a promotion (admin key or auth off). */
  autoServe?: boolean;
}

/** Runs `write` in a transaction; after it commits, wakes the listeners of `jobId` if it says so. */
async function committed<T>(prisma: Prisma, jobId: string, wake: JobWake | undefined, write: (tx: Tx) => Promise<{ value: T; changed: boolean }>): Promise<T> {
  const { value, changed } = await prisma.$transaction(write);
  if (changed) wake?.(jobId);
  return value;
}

/**
 * Locks a job's row until the transaction ends (PostgreSQL: a row lock; SQLite: the database's write
 * lock) and says whether it exists. A transaction that decides on a job another one may delete or
 * start from takes this first, so its reads see what the other committed.
 */
async function lockJob(tx: Tx, id: string): Promise<boolean> {
  return (await tx.$executeRaw`UPDATE "TrainingJob" SET "status" = "status" WHERE "id" = ${id}`) === 1;
}

/**
 * Why a checkpoint of a job trained as `source` cannot start `config`'s model, or null. Every layer
 * but the classifier must have the checkpoint's shapes, and only the width sets them (the input
 * size and the stem's strides do not; a new class count gets a new classifier). Refused here, such
 * a job used to be queued and fail on its worker with CHECKPOINT_MISMATCH.
 */
export function initMismatch(source: TrainingConfig, config: TrainingConfig): string | null {
  const [from, to] = [source.model.widthMultiplier, config.model.widthMultiplier];
  return from === to ? null : `its model has width ${from}, this job's model.widthMultiplier is ${to}: a checkpoint starts only a model of its own width`;
}

/**
 * Inserts a queued job. With an idempotency key already used, returns that job instead (`created: false`).
 * A job that starts from another's checkpoint (`init.fromJob`) is inserted only while that job and
 * a checkpoint of it exist: the source's row is locked first, so a deletion of it in flight either
 * ends before (INIT_JOB_INVALID) or sees this job and refuses (JOB_IN_USE).
 */
export async function insertQueued(prisma: Prisma, job: NewJob, wake?: JobWake) {
  try {
    const row = await committed(prisma, job.id, wake, async (tx) => {
      const source = job.config.init.fromJob;
      if (source) {
        if (!((await lockJob(tx, source)) && (await tx.checkpoint.findFirst({ where: { jobId: source }, select: { id: true } })))) {
          throw new InitJobInvalidError(source);
        }
        const { config } = await tx.trainingJob.findUniqueOrThrow({ where: { id: source }, select: { config: true } });
        const mismatch = initMismatch(JSON.parse(config) as TrainingConfig, job.config);
        if (mismatch) throw new InitJobInvalidError(source, mismatch);
      }
      await tx.trainingJob.create({
        data: {
          id: job.id,
          name: job.name,
          status: TRANSITIONS.create.to,
          config: JSON.stringify(job.config),
          idempotencyKey: job.idempotencyKey ?? null,
          createdByKeyId: job.createdByKeyId ?? null,
          autoServe: job.autoServe ?? true,
        },
      });
      await noteWrite(tx, job.id, [statusEvent(TRANSITIONS.create.to)]);
      return { value: await tx.trainingJob.findUniqueOrThrow({ where: { id: job.id }, include: JOB_WITH_MODEL }), changed: true };
    });
    return { row, created: true };
  } catch (err) {
    // Two requests with one key at once: the unique index lets one insert; the other gets its row.
    if (job.idempotencyKey && (err as { code?: string }).code === 'P2002') {
      const row = await findByIdempotencyKey(prisma, job.idempotencyKey);
      if (row) return { row, created: false };
    }
    throw err;
  }
}

export function findByIdempotencyKey(prisma: Prisma, key: string) {
  return prisma.trainingJob.findUnique({ where: { idempotencyKey: key }, include: JOB_WITH_MODEL });
}

/** Removes a job this request inserted but could not put on the queue: the request changed nothing. */
export async function discardUnqueued(prisma: Prisma, id: string): Promise<void> {
  await prisma.trainingJob.deleteMany({ where: { id, status: 'queued', attempts: 0 } });
}

/**
 * Cancel: queued -> cancelled; running -> cancelling (the owner hears it through Redis, or at its
 * next step through the row); cancelling stays (a repeated cancel is not a conflict). Finished
 * jobs: JobStateError (409).
 */
export async function requestCancel(prisma: Prisma, id: string, wake?: JobWake): Promise<{ from: JobStatus; to: JobStatus }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const row = await prisma.trainingJob.findUnique({ where: { id }, select: { status: true } });
    if (!row) throw new JobNotFoundError(id);
    const status = row.status as JobStatus;
    if (status === 'cancelling') return { from: status, to: status };
    const t = status === 'queued' ? TRANSITIONS.cancelQueued : status === 'running' ? TRANSITIONS.requestCancel : null;
    if (!t) throw new JobStateError(id, status, 'cancelled');
    const to = t.to;
    const count = await committed(prisma, id, wake, async (tx) => {
      const { count } = await tx.trainingJob.updateMany({
        where: { id, status },
        data: to === 'cancelled' ? { status: to, finishedAt: new Date() } : { status: to },
      });
      if (count === 1) await noteWrite(tx, id, [statusEvent(to)]);
      return { value: count, changed: count === 1 };
    });
    if (count === 1) return { from: status, to };
    // The worker moved it meanwhile: decide again on the new state.
  }
  throw new JobStateError(id, 'changing', 'cancelled right now; retry');
}

/** What a resume did: queued the job (its creating key's id with it), or nothing (that key is at its cap). */
type Resumed = { keyId: string | null } | { overCap: true };

/**
 * Resume: failed or cancelled -> queued, its error and end cleared, so that the next worker resumes
 * it from its newest checkpoint (from the start when it has none) with its own config and schedule.
 * Its JOB_TIMEOUT_MS counts again from that worker's claim. `maxActive` (> 0) caps the creating
 * key's queued and running jobs, this one included, counted in the same transaction under the
 * key's lock (unfinishedUnderLock). Other states: JobStateError (409).
 */
export async function requestResume(prisma: Prisma, id: string, maxActive: number, wake?: JobWake): Promise<Resumed> {
  const row = await prisma.trainingJob.findUnique({ where: { id }, select: { status: true, createdByKeyId: true } });
  if (!row) throw new JobNotFoundError(id);
  const status = row.status as JobStatus;
  if (!(TRANSITIONS.resume.from as readonly string[]).includes(status)) throw new JobStateError(id, status, 'resumed (only a failed or cancelled job can)');
  const keyId = row.createdByKeyId;
  return committed<Resumed>(prisma, id, wake, async (tx) => {
    if (keyId && maxActive > 0 && (await unfinishedUnderLock(tx, keyId)) >= maxActive) return { value: { overCap: true }, changed: false };
    const { count } = await tx.trainingJob.updateMany({
      where: { id, status },
      data: {
        status: TRANSITIONS.resume.to,
        finishedAt: null,
        startedAt: null,
        errorCode: null,
        errorMessage: null,
        ownerToken: null,
        phase: null,
        trainingEndsAt: null,
      },
    });
    if (count === 0) throw new JobStateError(id, 'changing', 'resumed right now; retry');
    await noteWrite(tx, id, [statusEvent(TRANSITIONS.resume.to)]);
    return { value: { keyId }, changed: true };
  });
}

/**
 * Whether a key has more than `maxActive` unfinished jobs: a create's check, after its insert.
 * Counted under the key's lock, so a resume of the key's in flight is either seen or sees this job.
 */
export async function overActiveCap(prisma: Prisma, keyId: string, maxActive: number): Promise<boolean> {
  return prisma.$transaction(async (tx) => (await unfinishedUnderLock(tx, keyId)) > maxActive);
}

/**
 * A key's unfinished jobs, counted after its API key's row is locked until the transaction ends,
 * so that the checks of its MAX_ACTIVE_JOBS_PER_KEY are decided one at a time: without the lock, on
 * PostgreSQL, resumes of one key at the same instant each counted before the others committed, and
 * all passed. (A no-op UPDATE, as lockJob locks a job: SQLite takes its write lock.)
 */
async function unfinishedUnderLock(tx: Tx, keyId: string): Promise<number> {
  await tx.$executeRaw`UPDATE "ApiKey" SET "name" = "name" WHERE "id" = ${keyId}`;
  return tx.trainingJob.count({ where: unfinishedOf(keyId) });
}

/** A key's jobs that have not finished: those its MAX_ACTIVE_JOBS_PER_KEY counts (a create's and a resume's). */
export function unfinishedOf(keyId: string) {
  return { createdByKeyId: keyId, status: { in: [...UNFINISHED_STATUSES] } };
}

/** The jobs a key posted that have not finished (queued, running, cancelling), oldest first. */
async function unfinishedJobsOf(prisma: Prisma, keyId: string): Promise<Array<{ id: string; status: JobStatus }>> {
  const rows = await prisma.trainingJob.findMany({
    where: unfinishedOf(keyId),
    select: { id: true, status: true },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
  });
  return rows.map((r) => ({ id: r.id, status: r.status as JobStatus }));
}

/**
 * A revoked key's jobs: a revocation alone leaves a leaked key's queued and running jobs to take
 * the workers for hours. With `cancel`, its unfinished jobs are cancelled first (queued ones end at
 * once; running ones stop at their next step, keeping their checkpoint; one that finished
 * meanwhile is passed over). `cancel` is the caller's: the API's also takes a queued job off the
 * queue and tells its worker through Redis; the CLI's (the database only) leaves those to the
 * worker's own checks of the row. Returns the ids cancelled or stopping, and the jobs still queued
 * or running.
 */
export async function revokedKeyJobs(
  prisma: Prisma,
  keyId: string,
  cancel?: (id: string) => Promise<unknown>,
): Promise<{ cancelled: string[]; goingOn: Array<{ id: string; status: JobStatus }> }> {
  const cancelled: string[] = [];
  if (cancel) {
    for (const job of await unfinishedJobsOf(prisma, keyId)) {
      try {
        await cancel(job.id);
        cancelled.push(job.id);
      } catch (err) {
        if (!(err instanceof JobStateError) && !(err instanceof JobNotFoundError)) throw err;
      }
    }
  }
  const goingOn = (await unfinishedJobsOf(prisma, keyId)).filter((j) => j.status !== 'cancelling');
  return { cancelled, goingOn };
}

/**
 * Deletes a finished job and everything recorded of it: its metric points, events, checkpoint rows
 * and Model row go with it. Returns its model's id; the caller deletes the job's files from the
 * artifact store after the commit (a crash between the two leaves files no row points at, never a
 * row whose files are gone). Refused with a 409, changing nothing: a job not finished (cancel it
 * first), one whose model is the serving one (promote another first), one an unfinished job starts
 * from (`init.fromJob`: it would fail to start, or to resume before its first checkpoint).
 *
 * `historyInChunks` (SQLite, whose statements run on the API's event loop): the history goes first,
 * in chunks between the checks and the row's deletion. Left to the foreign keys' cascade, one
 * statement deleted a 1000-epoch Fashion-MNIST job's 1.9M points and its events and froze the API
 * for 4.3 s (`npx tsx bench/job-delete.ts`); PostgreSQL's cascade runs off the loop, in 1.4 s
 * where chunks took 9.2. Only a refusal the first checks did not foresee (a promotion or a new
 * `init.fromJob` job in the moments between) can leave a job with part of its history gone.
 */
export async function deleteFinished(prisma: Prisma, id: string, opts: { historyInChunks?: boolean } = {}): Promise<{ modelId: string | null }> {
  if (opts.historyInChunks) {
    await prisma.$transaction((tx) => deletionChecks(tx, id));
    await deleteHistory(prisma, id);
  }
  return prisma.$transaction(async (tx) => {
    const { modelId } = await deletionChecks(tx, id);
    const { count } = await tx.trainingJob.deleteMany({ where: { id, status: { in: [...TERMINAL_STATUSES] } } });
    if (count === 0) throw new JobNotFoundError(id);
    return { modelId };
  });
}

/** Throws the 404/409 a deletion of job `id` gets now; its model's id otherwise. Locks the job's row. */
async function deletionChecks(tx: Tx, id: string): Promise<{ modelId: string | null }> {
  // Locks first, so the checks below see a promotion of this job's model, or a job inserted to
  // start from it, that committed while this waited (and such writes wait for this one).
  await lockJob(tx, id);
  await tx.$executeRaw`UPDATE "Model" SET "promotedAt" = "promotedAt" WHERE "jobId" = ${id}`;
  const row = await tx.trainingJob.findUnique({ where: { id }, select: { status: true, model: { select: { id: true } } } });
  if (!row) throw new JobNotFoundError(id);
  if (!isTerminal(row.status)) throw new JobStateError(id, row.status, 'deleted before it ends (cancel it first)');
  const modelId = row.model?.id ?? null;
  if (modelId && (await servingModel(tx))?.id === modelId) {
    throw new JobInUseError('MODEL_SERVING', `job "${id}"'s model ${modelId} is the one /v1/predict serves; promote another model before deleting it`);
  }
  // The text match narrows the (few) unfinished jobs to those whose config names this id at all.
  const active = await tx.trainingJob.findMany({
    where: { status: { notIn: [...TERMINAL_STATUSES] }, config: { contains: id } },
    select: { id: true, config: true },
  });
  const user = active.find((j) => (JSON.parse(j.config) as TrainingConfig).init?.fromJob === id);
  if (user)
    throw new JobInUseError('JOB_IN_USE', `job "${user.id}" (not finished) starts from job "${id}"'s checkpoint; wait for it to end or cancel it first`);
  return { modelId };
}

/**
 * A model may start serving on its own only by the authority of the key that posted its job, as
 * that key stands when the model is recorded: a job posted by an admin key revoked meanwhile (a
 * leaked key, or one rotated out) keeps its model, but the model serves only once an admin
 * promotes it. The job's autoServe goes false (the serving query reads it) and the job gets a
 * warning saying so. Models recorded before a revocation serve on: revoking a key rotates it out,
 * it does not change what /v1/predict answers. Returns the warning, or null.
 */
async function holdIfKeyRevoked(tx: Tx, jobId: string): Promise<JobEventWarningData | null> {
  const job = await tx.trainingJob.findUniqueOrThrow({ where: { id: jobId }, select: { autoServe: true, createdByKeyId: true } });
  if (!job.autoServe || !job.createdByKeyId) return null;
  const key = await tx.apiKey.findUnique({ where: { id: job.createdByKeyId }, select: { name: true, revokedAt: true } });
  if (!key?.revokedAt) return null;
  await tx.trainingJob.update({ where: { id: jobId }, data: { autoServe: false, warnings: { increment: 1 } } });
  return {
    code: 'MODEL_NOT_AUTO_SERVING',
    message: `the API key "${key.name}" that posted this job was revoked at ${key.revokedAt.toISOString()}, before its model was recorded: the model serves only once an admin promotes it (POST /v1/models/:id/promote)`,
  };
}

/** Rows of a job's history one statement deletes: about 12 ms of SQLite. */
export const HISTORY_CHUNK = 5000;

/**
 * A finished job's metric points and events, HISTORY_CHUNK rows per statement with the event loop
 * free between them (and SQLite's write lock, so a worker's progress write waits one chunk at most).
 */
async function deleteHistory(prisma: Prisma, jobId: string): Promise<void> {
  await inChunks(
    async () => (await prisma.metricPoint.findFirst({ where: { jobId }, orderBy: { step: 'asc' }, skip: HISTORY_CHUNK - 1, select: { step: true } }))?.step,
    (step) => prisma.metricPoint.deleteMany({ where: { jobId, step: { lte: step } } }),
  );
  await inChunks(
    async () => (await prisma.jobEvent.findFirst({ where: { jobId }, orderBy: { id: 'asc' }, skip: HISTORY_CHUNK - 1, select: { id: true } }))?.id,
    (id) => prisma.jobEvent.deleteMany({ where: { jobId, id: { lte: id } } }),
  );
}

/** Deletes up to each `edge()` (the last key of a full chunk, undefined once less is left), a turn of the event loop apart. */
async function inChunks(edge: () => Promise<number | undefined>, deleteUpTo: (key: number) => Promise<unknown>): Promise<void> {
  for (let key = await edge(); key !== undefined; key = await edge()) {
    await deleteUpTo(key);
    await yieldToLoop();
  }
}

// ---- worker side ---------------------------------------------------------------------------------

export type ClaimResult =
  | { kind: 'claimed'; owner: JobOwner; config: TrainingConfig; attempt: number; startedAt: Date }
  | { kind: 'missing' }
  | { kind: 'not-runnable'; status: JobStatus };

/**
 * A worker takes the job its queue handed it. From `running` this is a takeover: the queue gives
 * a job to a second worker only after the first one's lock expired, and the first one's writes
 * fail from now on. A job cancelled while no worker held it ends `cancelled` here.
 */
export async function claim(prisma: Prisma, jobId: string, wake?: JobWake): Promise<ClaimResult> {
  for (let i = 0; i < 5; i++) {
    const row = await prisma.trainingJob.findUnique({ where: { id: jobId } });
    if (!row) return { kind: 'missing' };
    const status = row.status as JobStatus;
    if (status === 'cancelling') {
      await committed(prisma, jobId, wake, async (tx) => {
        const { count } = await tx.trainingJob.updateMany({
          where: { id: jobId, status: from('cancelUnowned'), ownerToken: row.ownerToken },
          data: { status: TRANSITIONS.cancelUnowned.to, finishedAt: new Date(), ownerToken: null },
        });
        if (count) await noteWrite(tx, jobId, [statusEvent(TRANSITIONS.cancelUnowned.to)]);
        return { value: undefined, changed: count > 0 };
      });
      return { kind: 'not-runnable', status: 'cancelled' };
    }
    if (!(TRANSITIONS.claim.from as readonly string[]).includes(status)) return { kind: 'not-runnable', status };
    const config = resolveStoredConfig(row.config);
    if (!config.ok) {
      // No worker could run it: fail it once, instead of handing it back to the queue for ever.
      const message = `the job's stored config does not resolve with this version of qatserve (${config.why}); post it again`;
      const ended = await endUnowned(prisma, { id: jobId, status, ownerToken: row.ownerToken }, 'CONFIG_INVALID', message, wake);
      if (ended) return { kind: 'not-runnable', status: ended };
      continue; // the row changed meanwhile: read it again
    }
    const token = randomUUID();
    const startedAt = row.startedAt ?? new Date();
    // Compare-and-set on what was read: a claim in between makes this one read again.
    const count = await committed(prisma, jobId, wake, async (tx) => {
      const { count } = await tx.trainingJob.updateMany({
        where: { id: jobId, status, ownerToken: row.ownerToken, attempts: row.attempts },
        data: {
          status: TRANSITIONS.claim.to,
          ownerToken: token,
          attempts: row.attempts + 1,
          startedAt,
          errorCode: null,
          errorMessage: null,
          phase: null,
          trainingEndsAt: null,
        },
      });
      if (count === 1) await noteWrite(tx, jobId, [statusEvent(TRANSITIONS.claim.to)]);
      return { value: count, changed: count === 1 };
    });
    if (count === 1) {
      return {
        kind: 'claimed',
        owner: new JobOwner(prisma, jobId, token, row.attempts + 1, wake),
        // Resolved again: a job queued by an older version gets the defaults of fields added since
        // (it ran without time-based checkpoints when its stored config was used as it was).
        config: config.value,
        attempt: row.attempts + 1,
        startedAt,
      };
    }
  }
  return { kind: 'not-runnable', status: 'running' };
}

/** A job's stored config JSON, resolved with today's schema (as a claim will run it). */
export function resolveStoredConfig(json: string): { ok: true; value: TrainingConfig } | { ok: false; why: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    return { ok: false, why: (err as Error).message };
  }
  const parsed = TrainingConfig.safeParse(raw);
  if (parsed.success) return { ok: true, value: parsed.data };
  return {
    ok: false,
    why: toIssues(parsed.error.issues)
      .map((i) => `${i.path || '(root)'}: ${i.message}`)
      .join('; '),
  };
}

export interface StepRecord {
  step: number;
  epoch: number;
  loss: number;
  learningRate: number;
  imagesPerSecond: number;
}

export interface EvalRecord {
  step: number;
  epoch: number;
  top1: number;
  top5: number;
  floatTop1?: number | null;
}

/** What a worker's write tells it of the row it owns: `cancelling` means stop now. */
const runState = (status: string): 'running' | 'cancelling' => (status === 'cancelling' ? 'cancelling' : 'running');

/** The writes of the worker that claimed a job, each fenced by its owner token. */
export class JobOwner {
  /** This run's (re)start of training, for its steps' trainingEndsAt (training-eta.ts). */
  private run: (RunStart & { totalSteps: number }) | null = null;

  constructor(
    private readonly prisma: Prisma,
    readonly jobId: string,
    readonly token: string,
    readonly attempt: number,
    private readonly wake?: JobWake,
  ) {}

  /** A transaction of this owner's; its events' listeners are woken after it commits. */
  private async write<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    const value = await this.prisma.$transaction(fn);
    this.wake?.(this.jobId);
    return value;
  }

  private mine(statuses: readonly JobStatus[]) {
    return { id: this.jobId, ownerToken: this.token, status: { in: [...statuses] as string[] } };
  }

  /** Runs `fn` after a conditional touch of the job row as its owner; throws OwnershipLostError otherwise. */
  private async fenced<T>(data: object, fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.write(async (tx) => {
      const { count } = await tx.trainingJob.updateMany({ where: this.mine(['running', 'cancelling']), data: { updatedAt: new Date(), ...data } });
      if (count === 0) throw new OwnershipLostError(this.jobId);
      return fn(tx);
    });
  }

  /**
   * The fence, `data` and the revision bump in one statement (a step write runs every second beside
   * a training step, on the cores it trains on); the row after it. Throws OwnershipLostError when
   * the job is no longer this owner's.
   */
  private async advance(tx: Tx, data: { step?: number; epoch?: number; imagesPerSecond?: number | null; phase: string | null; trainingEndsAt?: Date | null }) {
    const [job] = await tx.trainingJob.updateManyAndReturn({
      where: this.mine(['running', 'cancelling']),
      data: { ...data, revision: { increment: 1 } },
      select: { status: true, step: true, epoch: true, revision: true },
    });
    if (!job) throw new OwnershipLostError(this.jobId);
    return job;
  }

  /** Training (re)started at `startStep`: points after it belong to a dead run and go. */
  start(info: { backend: string; totalSteps: number; startStep: number; dataset: JobDataset }): Promise<void> {
    this.run = { at: Date.now(), step: info.startStep, totalSteps: info.totalSteps };
    const data = {
      backend: info.backend,
      totalSteps: info.totalSteps,
      step: info.startStep,
      phase: null,
      dataset: JSON.stringify(info.dataset),
      trainingEndsAt: null,
    };
    return this.fenced(data, async (tx) => {
      await tx.metricPoint.deleteMany({ where: { jobId: this.jobId, step: { gt: info.startStep } } });
      const job = await tx.trainingJob.findUniqueOrThrow({ where: { id: this.jobId }, select: { epoch: true } });
      await noteWrite(tx, this.jobId, [
        {
          type: 'progress',
          payload: {
            step: info.startStep,
            epoch: job.epoch,
            totalSteps: info.totalSteps,
            backend: info.backend,
            restartedAtStep: info.startStep,
            dataset: info.dataset,
          } satisfies JobEventProgressData,
        },
      ]);
    });
  }

  /**
   * Marks the row alive while nothing else is written (an evaluation or the export can take
   * minutes) and returns its status: `cancelling` means stop now. No event: nothing changed.
   */
  async heartbeat(): Promise<'running' | 'cancelling'> {
    const touch = (status: JobStatus) => this.prisma.trainingJob.updateMany({ where: this.mine([status]), data: { updatedAt: new Date() } });
    if ((await touch('cancelling')).count === 1) return 'cancelling';
    if ((await touch('running')).count === 1) return 'running';
    throw new OwnershipLostError(this.jobId);
  }

  /**
   * The phase the job is in between steps (null: back at its steps), with a `progress` event.
   * Marks the row alive as the heartbeat does; returns its status: `cancelling` means stop now.
   */
  async phase(phase: JobPhase | null): Promise<'running' | 'cancelling'> {
    return this.write(async (tx) => {
      const job = await this.advance(tx, { phase: phase && JSON.stringify(phase) });
      await recordEvents(tx, this.jobId, [{ type: 'progress', payload: { step: job.step, epoch: job.epoch, phase } satisfies JobEventProgressData }]);
      return runState(job.status);
    });
  }

  /** One step's point and progress. Returns the job's status: `cancelling` means stop now. */
  step(s: StepRecord): Promise<'running' | 'cancelling'> {
    return this.steps([s]);
  }

  /**
   * Several steps' points and the newest one's progress, in one transaction of a fixed number of
   * statements (the worker writes what its training thread reported since the last write). Returns
   * the job's status: `cancelling` means stop now.
   */
  async steps(records: readonly StepRecord[]): Promise<'running' | 'cancelling'> {
    const last = records.at(-1);
    if (!last) throw new RangeError('JobOwner.steps: no steps to write');
    const endsAtMs = this.run && trainingEndsAt(this.run, Date.now(), last.step, this.run.totalSteps);
    const endsAt = endsAtMs ? new Date(endsAtMs) : null;
    const progress = {
      step: last.step,
      epoch: last.epoch,
      imagesPerSecond: last.imagesPerSecond,
      ...(endsAt ? { trainingEndsAt: endsAt.toISOString() } : {}),
    } satisfies JobEventProgressData;
    return this.write(async (tx) => {
      // A step means the run is back at its steps: a phase whose end was not written ends here.
      const job = await this.advance(tx, {
        step: last.step,
        epoch: last.epoch,
        imagesPerSecond: last.imagesPerSecond,
        trainingEndsAt: endsAt,
        phase: null,
      });
      const { revision } = job;
      const points = records.map((s) => ({
        step: s.step,
        epoch: s.epoch,
        loss: s.loss,
        learningRate: s.learningRate,
        imagesPerSecond: s.imagesPerSecond,
        revision,
      }));
      // Points are new in a normal run (start() removed a dead run's later ones); one that exists is
      // updated and keeps its scores, as the upsert of a single step's write did.
      const steps = points.map((p) => p.step);
      const existing = await tx.metricPoint.findMany({ where: { jobId: this.jobId, step: { in: steps } }, select: { step: true } });
      const known = new Set(existing.map((r) => r.step));
      const fresh = points.filter((p) => !known.has(p.step));
      // The events carry the points as written back (a loss can differ in its last digit), as
      // GET .../metrics shows them.
      const rows = fresh.length ? await tx.metricPoint.createManyAndReturn({ data: fresh.map((p) => ({ jobId: this.jobId, ...p })) }) : [];
      for (const { step, ...data } of points.filter((p) => known.has(p.step))) {
        rows.push(await tx.metricPoint.update({ where: { jobId_step: { jobId: this.jobId, step } }, data }));
      }
      rows.sort((a, b) => a.step - b.step);
      await recordEvents(tx, this.jobId, [
        { type: 'progress', payload: progress },
        ...rows.map((r) => ({ type: 'metric' as const, payload: pointPayload(r) })),
      ]);
      return runState(job.status);
    });
  }

  /** Evaluation scores land on the point of the step they follow. */
  evaluated(e: EvalRecord): Promise<void> {
    const scores = { top1: e.top1, top5: e.top5, floatTop1: e.floatTop1 ?? null };
    return this.fenced({}, async (tx) => {
      const revision = await bumpRevision(tx, this.jobId);
      const row = await tx.metricPoint.upsert({
        where: { jobId_step: { jobId: this.jobId, step: e.step } },
        create: { jobId: this.jobId, step: e.step, epoch: e.epoch, ...scores, revision },
        update: { ...scores, revision },
      });
      await recordEvents(tx, this.jobId, [{ type: 'evaluation', payload: pointPayload(row) }]);
    });
  }

  /**
   * A checkpoint is in the store under `key`: record it, and forget all but the newest `keep`.
   * Returns the keys the store no longer needs (pruned ones, or an older copy of this step).
   */
  checkpoint(c: { step: number; epoch: number; key: string }, keep: number): Promise<string[]> {
    return this.fenced({}, async (tx) => {
      const gone: string[] = [];
      const same = await tx.checkpoint.findUnique({ where: { jobId_step: { jobId: this.jobId, step: c.step } }, select: { key: true } });
      if (same && same.key !== c.key) gone.push(same.key);
      await tx.checkpoint.upsert({
        where: { jobId_step: { jobId: this.jobId, step: c.step } },
        create: { jobId: this.jobId, step: c.step, epoch: c.epoch, key: c.key },
        update: { epoch: c.epoch, key: c.key, createdAt: new Date() },
      });
      const stale = await tx.checkpoint.findMany({ where: { jobId: this.jobId }, orderBy: { step: 'desc' }, skip: keep, select: { step: true, key: true } });
      if (stale.length) await tx.checkpoint.deleteMany({ where: { jobId: this.jobId, step: { in: stale.map((r) => r.step) } } });
      return [...gone, ...stale.map((r) => r.key)];
    });
  }

  /** A problem that does not stop the job: counted on the row, its text kept as a `warning` event. */
  warning(w: JobEventWarningData): Promise<void> {
    return this.fenced({ warnings: { increment: 1 } }, async (tx) => {
      await noteWrite(tx, this.jobId, [{ type: 'warning', payload: { code: w.code, message: w.message } satisfies JobEventWarningData }]);
    });
  }

  /** Training ended (completed or stopped) at this step; the outcome follows. */
  trained(r: { step: number; epoch: number; backend: string }): Promise<void> {
    return this.fenced({ step: r.step, epoch: r.epoch, backend: r.backend }, async () => {});
  }

  /**
   * The verified export is in the store: record the Model row and end the job `succeeded`, in one
   * transaction. A cancel that arrived during the export wins: `cancelled`, and no Model row.
   */
  async succeed(model: NewModel): Promise<{ outcome: 'succeeded' | 'cancelled'; replacedPrefix: string | null }> {
    return this.write(async (tx) => {
      const now = new Date();
      const { count: cancelled } = await tx.trainingJob.updateMany({
        where: this.mine(['cancelling']),
        data: { status: TRANSITIONS.stop.to, finishedAt: now },
      });
      if (cancelled) {
        await noteWrite(tx, this.jobId, [statusEvent(TRANSITIONS.stop.to)]);
        return { outcome: 'cancelled' as const, replacedPrefix: null };
      }
      const { count } = await tx.trainingJob.updateMany({
        where: this.mine(TRANSITIONS.succeed.from),
        data: { status: TRANSITIONS.succeed.to, finishedAt: now },
      });
      if (count === 0) throw new OwnershipLostError(this.jobId);
      const { replacedPrefix } = await recordJobModel(tx, model);
      const held = await holdIfKeyRevoked(tx, this.jobId);
      await noteWrite(tx, this.jobId, [...(held ? [{ type: 'warning' as const, payload: held }] : []), statusEvent(TRANSITIONS.succeed.to)]);
      return { outcome: 'succeeded' as const, replacedPrefix };
    });
  }

  async fail(code: string, message: string): Promise<void> {
    const error = jobError(code, message);
    await this.write(async (tx) => {
      const { count } = await tx.trainingJob.updateMany({
        where: this.mine(TRANSITIONS.fail.from),
        data: { status: TRANSITIONS.fail.to, errorCode: error.code, errorMessage: error.message, finishedAt: new Date() },
      });
      if (count === 0) throw new OwnershipLostError(this.jobId);
      await noteWrite(tx, this.jobId, [statusEvent(TRANSITIONS.fail.to, error)]);
    });
  }

  /**
   * Training stopped between steps. On a worker shutdown the job goes back to `queued` (unless the
   * user cancelled meanwhile) for the next worker to resume; on a cancel it ends `cancelled`.
   */
  async stop(reason: 'cancel' | 'shutdown'): Promise<'handed-back' | 'cancelled'> {
    return this.write(async (tx) => {
      if (reason === 'shutdown') {
        const { count } = await tx.trainingJob.updateMany({
          where: this.mine(TRANSITIONS.handBack.from),
          data: { status: TRANSITIONS.handBack.to, ownerToken: null },
        });
        if (count === 1) {
          await noteWrite(tx, this.jobId, [statusEvent(TRANSITIONS.handBack.to)]);
          return 'handed-back' as const;
        }
      }
      const { count } = await tx.trainingJob.updateMany({
        where: this.mine(TRANSITIONS.stop.from),
        data: { status: TRANSITIONS.stop.to, finishedAt: new Date() },
      });
      if (count === 0) throw new OwnershipLostError(this.jobId);
      await noteWrite(tx, this.jobId, [statusEvent(TRANSITIONS.stop.to)]);
      return 'cancelled' as const;
    });
  }
}

// ---- queue and reconciler side -------------------------------------------------------------------

export interface UnfinishedJob {
  id: string;
  status: JobStatus;
  ownerToken: string | null;
  updatedAt: Date;
}

/** Jobs not finished whose row has not changed since `before` (the reconciler's candidates). */
export async function listUnfinished(prisma: Prisma, before: Date, limit = 500): Promise<UnfinishedJob[]> {
  const rows = await prisma.trainingJob.findMany({
    where: { status: { in: [...UNFINISHED_STATUSES] }, updatedAt: { lt: before } },
    select: { id: true, status: true, ownerToken: true, updatedAt: true },
    orderBy: { updatedAt: 'asc' },
    take: limit,
  });
  return rows.map((r) => ({ ...r, status: r.status as JobStatus }));
}

/**
 * Ends a job no worker can finish any more (its queue entry is gone, or the queue gave up on it):
 * `failed` with `code`, or `cancelled` if a cancel was pending. Only if the row is still as the
 * caller saw it (same status and owner), so a worker that claimed it meanwhile keeps it.
 */
export async function endUnowned(
  prisma: Prisma,
  job: { id: string; status?: JobStatus; ownerToken?: string | null },
  code: string,
  message: string,
  wake?: JobWake,
): Promise<JobStatus | null> {
  const owner = job.ownerToken !== undefined ? { ownerToken: job.ownerToken } : {};
  const now = new Date();
  if (!job.status || job.status === 'cancelling') {
    const count = await committed(prisma, job.id, wake, async (tx) => {
      const { count } = await tx.trainingJob.updateMany({
        where: { id: job.id, ...owner, status: from('cancelUnowned') },
        data: { status: TRANSITIONS.cancelUnowned.to, finishedAt: now, ownerToken: null },
      });
      if (count) await noteWrite(tx, job.id, [statusEvent(TRANSITIONS.cancelUnowned.to)]);
      return { value: count, changed: count > 0 };
    });
    if (count) return 'cancelled';
  }
  const statuses: readonly JobStatus[] = job.status ? [job.status] : TRANSITIONS.failUnowned.from;
  if (!statuses.every((s) => (TRANSITIONS.failUnowned.from as readonly JobStatus[]).includes(s))) return null;
  const error = jobError(code, message);
  const count = await committed(prisma, job.id, wake, async (tx) => {
    const { count } = await tx.trainingJob.updateMany({
      where: { id: job.id, ...owner, status: { in: [...statuses] } },
      data: { status: TRANSITIONS.failUnowned.to, errorCode: error.code, errorMessage: error.message, finishedAt: now, ownerToken: null },
    });
    if (count) await noteWrite(tx, job.id, [statusEvent(TRANSITIONS.failUnowned.to, error)]);
    return { value: count, changed: count > 0 };
  });
  return count ? 'failed' : null;
}

/** A failed job's error as clients see it: no paths, connection strings or stacks of the worker's machine, 4000 characters at most. */
function jobError(code: string, message: string): { code: string; message: string } {
  return { code, message: redact(message).slice(0, 4000) };
}

/** What a `metric` or `evaluation` event carries: the point as GET /v1/jobs/:id/metrics shows it. */
function pointPayload(p: Parameters<typeof toMetricPointView>[0]) {
  return toMetricPointView(p);
}
