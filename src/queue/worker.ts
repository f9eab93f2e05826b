// `qatserve worker`: the process that trains. It is the only entry point that brings Prisma and
// the ML code together (the ML code itself runs in a worker thread, see training-thread.ts).
//
// One job at a time. Bull's lock is renewed by this process's event loop, which stays free while
// the thread computes. If this process dies, the lock expires, Bull's stalled check (in any
// worker) re-queues the job and the next worker, on any machine, resumes it from its newest
// checkpoint in the artifact store. If this process is still alive when that happens (its lock
// lapsed), its writes are fenced off by the new owner's token and it stops within a step.
// SIGTERM/SIGINT: stop taking jobs, checkpoint the running one, hand it back to the queue, exit.
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import type Queue from 'bull';
import type { Redis } from 'ioredis';
import { artifactStoreWarning, openArtifactStore } from '../artifacts/open-store.js';
import { SettingsError, type Settings } from '../config/settings.js';
import { openDatabase, type Prisma } from '../db/database.js';
import { requireDeployment } from '../db/deployment.js';
import { budgetOnMachine, estimateJob, jobBudget, machineMemoryBytes, mib, type JobBudget } from '../jobs/job-admission.js';
import { countClassFolders } from '../data/image-folder.js';
import { endUnowned, resolveStoredConfig } from '../jobs/job-lifecycle.js';
import { isTerminal, type JobStatus } from '../jobs/job-status.js';
import { isRedisAuthError, openRedis, reportJointOutages, redisOutageLine, redisServer, untilRedisAnswers } from './redis-connection.js';
import { warnIfEvicting, watchRedisFull } from './redis-memory.js';
import { watchQueueHolder } from './redis-role.js';
import { isCertRefused, isSocketUnreachable } from '../socket-errors.js';
import { subscribeCancels } from './cancel-bus.js';
import { jobEventPublisher } from './job-event-bus.js';
import { diskOutcomeWords, startJob, WorkerShutdownError, type RunningJob } from './job-runner.js';
import { openTrainingQueue, type TrainingJobData } from './training-queue.js';
import { useTrainingHeapPolicy } from '../ml/training-heap.js';
import { listFleet, WorkerBeacon, type WorkerView } from './worker-registry.js';
import { ELSEWHERE_RETRY_MS, ElsewhereError, forgetLacking, mayHoldFolder, missingFolder, noteLacking } from './dataset-holders.js';
import { diskNeedBytes, diskTrouble, roomFor, roomMessage, waitForRoom, writableDiskSpace, type DiskSpace } from './disk-room.js';

/** Pause before handing back a job that hit an infrastructure error. */
const RETRY_PAUSE_MS = 5000;
/** How often a worker that takes no jobs for want of disk space looks again. */
const DISK_RECHECK_MS = 5000;
/** How often a worker started before its Redis tries it again. */
const REDIS_RETRY_MS = 2000;
/** How often a worker reads a full Redis's memory, to say when it has room again. */
const REDIS_FULL_POLL_MS = 5000;
/** How long a worker fetches nothing around the return of a job it left for another (see standAside). */
const STAND_ASIDE_MS = 4000;

/** Control signal: this worker's disk is short of room for the job; Bull should give it to another worker. */
export class NoRoomError extends Error {
  readonly code = 'WORKER_NO_ROOM';
  constructor(jobId: string, why: string) {
    super(`job ${jobId} left on the queue: ${why}`);
    this.name = 'NoRoomError';
  }
}

/**
 * The config of a job a worker may start, as its claim will resolve it; null when there is no row,
 * the job is finished, or its config does not resolve (the claim reports that, not this check).
 */
async function runnableConfig(prisma: Prisma, jobId: string) {
  const row = await prisma.trainingJob.findUnique({ where: { id: jobId }, select: { status: true, config: true } });
  if (!row || isTerminal(row.status)) return null;
  const config = resolveStoredConfig(row.config);
  return config.ok ? config.value : null;
}

/**
 * The job's budget on this worker: JOB_DISK_BUDGET_MB, but no more than the disk holds beyond the
 * reserve, so a job the whole disk cannot take fails JOB_TOO_LARGE (with its real classes) before
 * it trains instead of filling the disk and waiting for room that never comes.
 */
function budgetOn(space: DiskSpace, budget: JobBudget, reserveBytes: number): JobBudget {
  return { ...budget, diskBytes: Math.max(0, Math.min(budget.diskBytes, space.totalBytes - reserveBytes)) };
}

/**
 * Why a job the queue gave up on failed, in words a user can act on (Bull says "job stalled more
 * than allowable limit"). A job that ends its worker at every resume is most often over the
 * machine's memory: the kernel kills the process without a word.
 */
export function workerLostMessage(row: { step: number } | null, maxStalledCount: number): string {
  const deaths = maxStalledCount + 1;
  const where = row ? ` (it had reached step ${row.step})` : '';
  return (
    `its worker died ${deaths} time${deaths === 1 ? '' : 's'} while running it${where}, so it was given up (MAX_STALLED_COUNT ${maxStalledCount}). ` +
    "A job that ends its worker every time is most often more than the machine's memory holds: " +
    'a smaller training.batchSize, model.inputSize or model.widthMultiplier needs less'
  );
}

/** The process's memory in MiB: what a job left behind shows in "job left the worker". */
function memoryMiB() {
  const m = process.memoryUsage();
  return { rss: m.rss >> 20, heapUsed: m.heapUsed >> 20, external: m.external >> 20, arrayBuffers: m.arrayBuffers >> 20 };
}

/** A queue entry that is not a job of this deployment. Never acknowledged as done: failed, loudly. */
export class ForeignJobError extends Error {
  readonly code = 'FOREIGN_JOB';
  constructor(data: TrainingJobData, own: { deploymentId: string; queuePrefix: string }, why: 'other-deployment' | 'no-row') {
    super(
      `queue entry for job ${data.jobId} is not a job of deployment ${own.deploymentId}: ` +
        (why === 'other-deployment'
          ? `it was queued by deployment ${data.deploymentId}`
          : `this deployment's database has no row for it (queued by deployment ${data.deploymentId ?? 'unknown'})`) +
        `. Deployments share queue prefix "${own.queuePrefix}" on one Redis; leave QUEUE_PREFIX unset (it derives from the deployment id) or give each deployment its own.`,
    );
    this.name = 'ForeignJobError';
  }
}

/**
 * Scratch directories a killed worker on this machine left behind, of jobs that are finished by
 * now (or unknown). Those of unfinished jobs stay: another worker process here may be running one.
 */
async function removeStaleScratch(workDir: string, prisma: Prisma): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await fs.promises.readdir(workDir).catch(() => [] as string[])) {
    const row = await prisma.trainingJob.findUnique({ where: { id: name }, select: { status: true } });
    if (row && !isTerminal(row.status)) continue;
    await fs.promises.rm(path.join(workDir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

export interface WorkerHandle {
  /** Graceful stop: checkpoint and hand back the running job, close connections. */
  stop(): Promise<void>;
}

export async function runWorker(settings: Settings): Promise<WorkerHandle> {
  const own = requireDeployment(settings);
  const reserve = settings.limits.workerDiskReserveBytes;
  const disk = await writableDiskSpace(settings.workDir).catch((err: Error) => {
    // Else every job it took failed to set up and went back to the queue, every 5 s, for ever.
    throw new SettingsError(`DATA_DIR cannot be written (${settings.workDir}): ${err.message}`);
  });
  if (disk.totalBytes <= reserve) {
    throw new SettingsError(
      `DATA_DIR's disk (${settings.workDir}) holds ${Math.floor(disk.totalBytes / 2 ** 20)} MiB in all, no more than WORKER_DISK_RESERVE_MB keeps free (${reserve / 2 ** 20} MiB): this worker could take no job. Put DATA_DIR on a larger disk or lower WORKER_DISK_RESERVE_MB.`,
    );
  }
  useTrainingHeapPolicy();
  const log = pino({ level: settings.logLevel, base: { role: 'worker', pid: process.pid, deployment: own.deploymentId } });
  const db = openDatabase(settings.databaseUrl, settings.databaseTimeouts);
  const store = openArtifactStore(settings);
  const queue = openTrainingQueue(settings);
  // A full Redis refuses the queue's writes every few seconds (Bull's next-job wait, the state
  // entry): said once, and again when it has room.
  const full = watchRedisFull(
    queue.client,
    REDIS_FULL_POLL_MS,
    (line) => log.error(`${line}. Until then this worker can take no job, and GET /v1/workers does not list it`),
    (line) => log.info(line),
  );
  // A Redis unfit for the queue (cluster mode, a read-only replica): said once, not per refusal.
  const holder = watchQueueHolder(
    queue.client,
    (line) => log.error(`${line}. Until then this worker can take no job`),
    (line) => log.info(line),
  );
  queue.on('error', (err) => {
    if (full.saw(err)) return;
    // After Redis was out of reach longer than the lock, the stalled check re-queued a job this
    // worker went on training; handing it back then finds the lock gone. The row is right (its
    // writes are fenced by the owner token) and the re-queued entry is skipped: not an error.
    if (/^Missing lock for job/.test(err.message))
      log.warn(
        { err },
        'queue: a job left this worker after its queue lock had expired (Redis out of reach for a while); its row stays as this worker recorded it',
      );
    // The same after Redis lost its data (restarted without persistence, flushed): the entry of
    // the job this worker finished or handed back is gone; the reconciler re-queues from rows.
    else if (/^Missing key for job/.test(err.message))
      log.warn(
        { err: err.message },
        "queue: a job's queue entry was gone when this worker finished with it (Redis lost its data: restarted without persistence, or flushed); its row stays as this worker recorded it",
      );
    // Redis out of reach or turning connections away (or its certificate not trusted): said once
    // per outage (reportJointOutages, below), not once per reconnect attempt of each of Bull's
    // connections. A Redis unfit for the queue (cluster mode, a replica) is said by `holder`.
    else if (!holder.saw(err) && !isSocketUnreachable(err) && !isRedisAuthError(err) && !isCertRefused(err)) log.error({ err }, 'queue error');
  });
  // Publishes "job X has new events" after each lifecycle write, for the API's event streams.
  const publisher = openRedis(settings.redisUrl, settings.redisTimeoutMs, { maxRetriesPerRequest: 1 });
  publisher.on('error', () => {}); // streams fall back to polling the database
  let cancelConnection: Redis | null = null;
  const outages = reportJointOutages(
    () => [publisher, ...queue.clients, ...(cancelConnection ? [cancelConnection] : [])],
    (err) => log.warn(`${redisOutageLine(publisher, err)}; trying again until it answers (check REDIS_URL and that Redis runs)`),
    () => log.info(`Redis at ${redisServer(publisher)} answers`),
  );
  warnIfEvicting(publisher, (line) => log.warn(line));
  const wake = jobEventPublisher(publisher, settings.queuePrefix);
  // What this worker is doing, for GET /v1/workers on any API replica.
  // JOB_MEMORY_BUDGET_MB held to what this machine's memory holds: what this worker admits.
  const memoryBudget = budgetOnMachine(jobBudget(settings), machineMemoryBytes());
  const beacon = new WorkerBeacon(publisher, settings.queuePrefix, {
    dataDir: settings.workDir,
    dataRoot: settings.dataRoot,
    trainThreads: settings.trainThreads,
    memoryBudgetBytes: memoryBudget.memoryBytes,
    onError: (err) => {
      if (!full.saw(err)) log.debug({ err }, 'worker state not published');
    },
  });
  let current: RunningJob | null = null;
  let stopping = false;
  /** Set while this worker takes no jobs for want of disk space. */
  let roomWait: AbortController | null = null;
  /** The job whose last run here ended with a full disk: a second time in a row fails it. */
  let lastDiskFull: string | null = null;
  /** Jobs this worker left for another (with their folder, or room) and has said so in its log (once each). */
  const leftForOthers = new Set<string>();
  /**
   * Why this worker fetches no jobs for now (its local queue is paused while any holds): waiting for
   * disk, or standing aside while a job it left for a worker with the folder comes back to the queue.
   */
  const holds = new Set<string>();
  const holdOff = async (reason: string) => {
    holds.add(reason);
    if (holds.size === 1) await queue.pause(true, true).catch(() => {});
  };
  const release = (reason: string) => {
    if (!holds.delete(reason) || holds.size > 0 || stopping) return;
    void queue.resume(true).catch((err) => log.error({ err }, 'queue not resumed'));
  };
  /**
   * Keeps this worker from fetching while a job it left for another is offered again: Bull hands a
   * job to whichever worker has waited longest for one, and that was always this one (its blocking
   * fetch and the job's delay kept in step), so the worker with the folder never got it. The first
   * time, the job goes back to the queue at once and this worker stands aside now (an idle worker
   * with the folder takes it at once); after that, the job comes back after ELSEWHERE_RETRY_MS and
   * this worker stands aside around that moment.
   */
  const standAside = async (jobId: string, inMs: number) => {
    const reason = `aside:${jobId}`;
    if (holds.has(reason)) return;
    const hold = async () => {
      if (stopping) return;
      await holdOff(reason);
      setTimeout(() => release(reason), STAND_ASIDE_MS).unref();
    };
    if (inMs <= 0) await hold();
    else setTimeout(() => void hold(), inMs).unref();
  };

  /**
   * Leaves the job on the queue, its row untouched, for another live worker: `why` is logged the
   * first time for a job, `again` (at debug) after. See standAside for how the other one gets it.
   */
  const leaveOnQueue = async (bullJob: Queue.Job<TrainingJobData>, jobId: string, why: string, again: string, fields: object): Promise<never> => {
    const first = !leftForOthers.has(jobId);
    if (first) {
      if (leftForOthers.size >= 1000) leftForOthers.clear();
      leftForOthers.add(jobId);
      log.warn({ jobId, ...fields }, why);
    } else log.debug({ jobId, ...fields, attempt: bullJob.attemptsMade }, again);
    // Entries queued before the backoff existed come straight back: not in a hot loop.
    if (!bullJob.opts.backoff) await new Promise((r) => setTimeout(r, ELSEWHERE_RETRY_MS));
    const retryInMs = first || !bullJob.opts.backoff ? 0 : ELSEWHERE_RETRY_MS;
    await standAside(jobId, retryInMs - 1000);
    // `why` says it was left on the queue, and for whom.
    throw new ElsewhereError(`job ${jobId}: ${why}`, retryInMs);
  };

  /** The other workers that may run a job: live, or away (restarting) for less than WORKER_RESTART_GRACE_S. */
  const otherWorkers = async (): Promise<{ all: WorkerView[]; away: WorkerView[] }> => {
    const { live, away } = await listFleet(publisher, settings.queuePrefix, settings.workerRestartGraceMs);
    const other = (w: WorkerView) => w.id !== beacon.id;
    return { all: [...live, ...away].filter(other), away: away.filter(other) };
  };
  /** "the 2 live worker(s) and the 1 away" of `ids`: whom a job is left for. */
  const whom = (ids: string[], away: WorkerView[]) => {
    const gone = ids.filter((id) => away.some((w) => w.id === id)).length;
    return `the ${ids.length - gone} live worker(s)${gone ? ` and the ${gone} away for less than WORKER_RESTART_GRACE_S` : ''}`;
  };

  /**
   * The job's estimated heap is over this worker's memory budget (JOB_MEMORY_BUDGET_MB, or a small
   * machine): leaves it for a worker whose budget holds it, live or away for less than
   * WORKER_RESTART_GRACE_S. With none, this worker's run fails it JOB_TOO_LARGE, saying why.
   * Without this, in a fleet of unequal machines a small one failed jobs a larger one could run,
   * whenever it happened to take them first (or while the larger one restarted).
   */
  const leaveForRoomier = async (bullJob: Queue.Job<TrainingJobData>, jobId: string, needBytes: number): Promise<void> => {
    const others = await otherWorkers();
    // A worker from before the budget was published may have room: it is asked in turn.
    const roomier = others.all.filter((w) => (w.memoryBudgetBytes ?? Infinity) >= needBytes).map((w) => w.id);
    if (roomier.length === 0) return;
    await leaveOnQueue(
      bullJob,
      jobId,
      `the job's estimated heap, ${mib(needBytes)}, is over this worker's memory budget of ${mib(memoryBudget.memoryBytes)}: left on the queue for ${whom(roomier, others.away)} with room`,
      'job left on the queue again for a worker with room for it',
      { needBytes },
    );
  };

  /**
   * This worker lacks the job's image folder: leaves the job on the queue (row untouched) while a
   * worker that has not said it lacks the folder too may have it (live, or away for less than
   * WORKER_RESTART_GRACE_S); fails it when none may.
   */
  const leaveForHolder = async (bullJob: Queue.Job<TrainingJobData>, jobId: string, folder: string): Promise<never> => {
    const lacking = await noteLacking(publisher, settings.queuePrefix, jobId, beacon.id);
    const others = await otherWorkers();
    const holders = mayHoldFolder(others.all, lacking, beacon.id);
    if (holders.length > 0) {
      await leaveOnQueue(
        bullJob,
        jobId,
        `dataset folder "${folder}" is not under this worker's DATA_ROOT: job left on the queue for ${whom(holders, others.away)} that may have it`,
        'job left on the queue again for a worker with its folder',
        { folder },
      );
    }
    const asked = new Set([...others.all.map((w) => w.id), beacon.id]).size;
    const message =
      `dataset folder "${folder}" does not exist under the data root (DATA_ROOT) of any live worker${others.away.length ? ' or worker away for less than WORKER_RESTART_GRACE_S' : ''} (${asked} asked): ` +
      "copy or mount it on a worker's machine, then post the job again";
    const row = await db.prisma.trainingJob.findUnique({ where: { id: jobId }, select: { status: true, ownerToken: true } });
    if (row && !isTerminal(row.status))
      await endUnowned(db.prisma, { id: jobId, status: row.status as JobStatus, ownerToken: row.ownerToken }, 'DATASET_NOT_FOUND', message, wake);
    await forgetLacking(publisher, settings.queuePrefix, jobId).catch(() => {});
    log.error({ jobId, folder }, message);
    await bullJob.discard();
    throw new Error(`job ${jobId} failed: ${message}`);
  };

  /** Takes no jobs until DATA_DIR has `wantBytes` free: pauses this worker's queue before it resolves. */
  const waitForDisk = async (wantBytes: number, why: string) => {
    if (roomWait || stopping) return;
    const ctl = new AbortController();
    roomWait = ctl;
    await holdOff('disk');
    beacon.set('waiting-for-disk', { reason: why });
    log.error(
      `${why}; taking no jobs until DATA_DIR takes writes and has ${Math.ceil(wantBytes / 2 ** 20)} MiB free (looking every ${DISK_RECHECK_MS / 1000} s)`,
    );
    void waitForRoom(settings.workDir, wantBytes, DISK_RECHECK_MS, ctl.signal).then((room) => {
      roomWait = null;
      if (!room || stopping) return;
      log.info('DATA_DIR takes writes and has room again; taking jobs');
      beacon.set('idle');
      release('disk');
    });
  };
  const stale = await removeStaleScratch(settings.workDir, db.prisma).catch((err) => (log.warn({ err }, 'stale scratch not removed'), []));
  if (stale.length) log.info({ jobs: stale }, 'removed scratch directories of finished jobs');

  // A deployment's services start in any order: a worker up before its Redis waits for it. It
  // exited with ioredis's bare "Connection is closed." and its stack (the cancel subscription's
  // first connect), and `qatserve serve` restarted it in a loop.
  await untilRedisAnswers(publisher, settings.redisTimeoutMs, REDIS_RETRY_MS);

  const cancels = await subscribeCancels(
    settings.redisUrl,
    settings.queuePrefix,
    (jobId) => {
      if (current?.jobId === jobId) {
        log.info({ jobId }, 'cancel requested');
        current.abort('cancel');
      }
    },
    settings.redisTimeoutMs,
    (sub) => (cancelConnection = sub),
  );

  // A job that stalled more often than allowed is failed by Bull; the row must say so too.
  queue.on('failed', (job, err) => {
    if (!/stalled more than allowable limit/.test(err?.message ?? '')) return;
    if (!job) {
      log.error({ err }, 'Bull failed a stalled job it no longer holds; its row cannot be marked');
      return;
    }
    const jobId = job.data.jobId;
    void db.prisma.trainingJob
      .findUnique({ where: { id: jobId }, select: { step: true } })
      .then((row) => endUnowned(db.prisma, { id: jobId }, 'WORKER_LOST', workerLostMessage(row, settings.maxStalledCount), wake))
      .catch((e) => log.error({ err: e }, 'could not record a stalled job'));
  });
  queue.on('stalled', (job) =>
    log.warn(
      { jobId: job.data.jobId },
      'job stalled: its queue lock expired (its worker died, or could not reach Redis for LOCK_DURATION_MS); re-queued, to resume from its last checkpoint unless its worker still trains it',
    ),
  );
  // This worker could not renew its lock (Redis trouble): another worker may get the job soon, so
  // hand it back with a checkpoint now rather than train on without a lock.
  queue.on('lock-extension-failed', (job, err) => {
    if (current && current.jobId === job?.data?.jobId) {
      log.error({ jobId: current.jobId, err }, 'lost the queue lock of the running job; handing it back');
      current.abort('shutdown');
    }
  });

  void queue.process(1, async (bullJob) => {
    const data = bullJob.data;
    const foreign = async (why: 'other-deployment' | 'no-row') => {
      const err = new ForeignJobError(data, own, why);
      log.error({ jobId: data.jobId, queuedBy: data.deploymentId ?? null }, err.message);
      await bullJob.discard();
      return err;
    };
    if (data.deploymentId && data.deploymentId !== own.deploymentId) throw await foreign('other-deployment');
    const jobId = data.jobId;
    // Before the claim, so a worker short of disk leaves the job (its row untouched) to the others.
    const config = await runnableConfig(db.prisma, jobId);
    // Before the claim too, so a worker without the job's image folder leaves it to one that has it.
    const folder = config ? await missingFolder(settings.dataRoot, config) : null;
    if (folder !== null) await leaveForHolder(bullJob, jobId, folder);
    if (config?.dataset.type === 'imagefolder') void forgetLacking(publisher, settings.queuePrefix, jobId).catch(() => {});
    if (config) {
      const classes = config.dataset.type === 'imagefolder' ? await countClassFolders(settings.dataRoot, config.dataset.path) : null;
      const heapBytes = estimateJob(config, classes ?? undefined).memoryBytes;
      if (heapBytes > memoryBudget.memoryBytes) await leaveForRoomier(bullJob, jobId, heapBytes);
    }
    const need = config ? diskNeedBytes(config) : 0;
    // A filesystem turned read-only still reports free space: a write is the test.
    const space = await writableDiskSpace(settings.workDir).catch((err: Error) => err);
    if (space instanceof Error) {
      const why = `the worker's DATA_DIR cannot be written (${space.message})`;
      await waitForDisk(need + reserve, `job ${jobId} left on the queue: ${why}`);
      throw new NoRoomError(jobId, why);
    }
    const room = roomFor(space, need, reserve);
    if (room.kind === 'wait') {
      const why = roomMessage(space, need, reserve);
      await waitForDisk(room.wantBytes, `job ${jobId} left on the queue: ${why}`);
      throw new NoRoomError(jobId, why);
    }
    beacon.set('training', { jobId });
    current = startJob(
      {
        prisma: db.prisma,
        store,
        workDir: settings.workDir,
        dataRoot: settings.dataRoot,
        budget: budgetOn(space, memoryBudget, reserve),
        log,
        threadUrl: new URL('./training-thread.js', import.meta.url),
        jobTimeoutMs: settings.jobTimeoutMs,
        trainThreads: settings.trainThreads,
        wasmSimd: settings.engine.wasmSimd,
        wake,
        progressWriteIntervalMs: settings.progressWriteIntervalMs,
        // Waiting for room only helps a job the disk can take and that has not filled it here just before.
        onDiskFull: room.kind === 'room' && lastDiskFull !== jobId ? 'hand-back' : 'fail',
      },
      jobId,
    );
    if (stopping) current.abort('shutdown');
    try {
      let outcome;
      try {
        outcome = await current.done;
      } catch (err) {
        // Not the job's fault (database or disk trouble): Bull retries it, but not in a hot loop.
        log.error({ jobId, err }, 'job could not be run; retrying later');
        const trouble = diskTrouble(err);
        if (trouble) await waitForDisk(need + reserve, `DATA_DIR ${trouble} while job ${jobId} was set up`);
        else await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
        throw err;
      }
      const diskOutcome = outcome === 'disk-full' || outcome === 'disk-read-only';
      lastDiskFull = diskOutcome ? jobId : null;
      if (outcome === 'missing') throw await foreign('no-row');
      log.info({ jobId, outcome, mem: memoryMiB() }, 'job left the worker');
      if (diskOutcome) {
        await waitForDisk(need + reserve, `DATA_DIR ${diskOutcomeWords(outcome)} while job ${jobId} ran`);
        throw new NoRoomError(jobId, "the worker's DATA_DIR failed a write; it resumes from its last stored checkpoint");
      }
      if (outcome === 'handed-back') throw new WorkerShutdownError(jobId);
      if (outcome === 'failed') {
        // A real failure: never retried (the attempts budget is for hand-backs only).
        await bullJob.discard();
        throw new Error(`job ${jobId} failed`);
      }
      return { outcome };
    } finally {
      current = null;
      if (!roomWait) beacon.set('idle');
    }
  });
  const storeWarning = artifactStoreWarning(settings);
  if (storeWarning) log.warn(storeWarning);
  log.info(
    { queuePrefix: settings.queuePrefix, store: store.kind, lockDurationMs: settings.lockDurationMs, trainThreads: settings.trainThreads },
    'worker waiting for jobs',
  );
  beacon.start();

  let stopped: Promise<void> | null = null;
  return {
    stop() {
      stopped ??= (async () => {
        stopping = true;
        roomWait?.abort();
        // Stop fetching new jobs at once; then let the running one checkpoint and come back.
        await queue.pause(true, true).catch(() => {});
        current?.abort('shutdown');
        full.stop();
        outages.stop();
        await queue.close();
        await cancels.close();
        await beacon.stop();
        publisher.disconnect();
        await store.close();
        await db.close();
        log.info('worker stopped');
      })();
      return stopped;
    },
  };
}
