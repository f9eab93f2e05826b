// Runs one training job for the worker: claims it (src/jobs/job-lifecycle.ts), fetches what it
// starts from out of the artifact store (its own newest checkpoint to resume, or another job's
// for init.fromJob), starts the training thread, and records what the thread reports through the
// job's owner: progress and metric points (upserted by step, so a resumed run never duplicates
// them), checkpoints (uploaded to the store before they are recorded) and the exported model
// (uploaded, then its Model row and `succeeded` in one transaction).
//
// Everything on this machine lives in a scratch directory (WORK_DIR/<job>) that is emptied when
// the job starts and removed when it leaves the worker: the store is the only thing another
// machine can resume from.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { checkpointKey, modelPrefix } from '../artifacts/artifact-keys.js';
import { ArtifactCorruptError, ArtifactNotFoundError, type ArtifactStore } from '../artifacts/artifact-store.js';
import { downloadPrefix, uploadDir } from '../artifacts/transfer.js';
import type { Prisma } from '../db/database.js';
import { newModelFromManifest } from '../db/model-rows.js';
import type { JobBudget } from '../jobs/job-admission.js';
import type { JobWake } from '../jobs/job-events.js';
import { claim, OwnershipLostError, type JobOwner } from '../jobs/job-lifecycle.js';
import { toJobDataset } from '../jobs/job-view.js';
import type { TrainingConfig } from '../config/training-config.js';
import { STOPPED_BEFORE_TRAINING, type FromThread, type PostedTrainResult, type ThreadInput, type ToThread } from './thread-protocol.js';
import { StepWrites } from './step-writes.js';
import { PhaseWrites } from './phase-writes.js';
import type { ExportJobResult } from '../export/export-job.js';
import type { Logger } from '../logger.js';
import { FailureLog } from './failure-log.js';
import { DISK_TROUBLE } from './disk-room.js';

export interface RunnerContext {
  prisma: Prisma;
  store: ArtifactStore;
  /** This machine's scratch space for running jobs (settings.workDir). */
  workDir: string;
  dataRoot: string;
  /** JOB_MEMORY_BUDGET_MB and JOB_DISK_BUDGET_MB: a job over them with its data set's real classes fails JOB_TOO_LARGE. */
  budget: JobBudget;
  log: Logger;
  /** The compiled training thread (dist/queue/training-thread.js). */
  threadUrl: URL;
  /** Wall-clock limit per job, counted from its first start (JOB_TIMEOUT_MS). */
  jobTimeoutMs: number;
  /** CPU threads a job may keep busy (TRAIN_THREADS); 1 keeps batch rendering on the training thread. */
  trainThreads?: number;
  /** The wasm-training kernels' SIMD paths (QATSERVE_WASM_SIMD; default on). */
  wasmSimd?: boolean;
  /** Wakes the API's event streams after each write of this job (Redis pub/sub). */
  wake?: JobWake;
  /** The longest a reported step waits for its database write (PROGRESS_WRITE_INTERVAL_MS; default STEP_WRITE_INTERVAL_MS). */
  progressWriteIntervalMs?: number;
  /** How long an export asked to stop may take to reach its next batch (default EXPORT_STOP_GRACE_MS). */
  exportStopGraceMs?: number;
  /** How long the job's row may go unwritten before the runner touches it (default HEARTBEAT_MS). */
  heartbeatMs?: number;
  /**
   * What a full or read-only DATA_DIR does to the job: `hand-back` puts it back on the queue
   * (outcome `disk-full` or `disk-read-only`: the worker waits for room and a write, another worker may resume it);
   * `fail` (the default) ends it WORKER_DISK_FULL or WORKER_DISK_READ_ONLY.
   */
  onDiskFull?: 'hand-back' | 'fail';
}

/**
 * Why a running job is being stopped: the user cancelled it, this worker shuts down (or lost its
 * queue lock: the job goes back to the queue), the wall-clock limit passed, or another worker
 * took the job over (this one must stop without writing anything).
 */
export type AbortReason = 'cancel' | 'shutdown' | 'timeout' | 'lost';

/** Control signal: the worker is stopping; Bull should give the job to another worker. */
export class WorkerShutdownError extends Error {
  readonly code = 'WORKER_SHUTDOWN';
  constructor(jobId: string) {
    super(`worker shut down while running job ${jobId}; handed back to the queue`);
    this.name = 'WorkerShutdownError';
  }
}

/** What happened to DATA_DIR in a disk hand-back, in words for "DATA_DIR ...". */
export const diskOutcomeWords = (outcome: Outcome): string => (outcome === 'disk-full' ? DISK_TROUBLE.full : DISK_TROUBLE.readOnly);

/** The thread's codes for this machine's disk failing the job (thread-protocol.ts), and the hand-back each makes. */
const DISK_OUTCOMES: Record<string, Outcome> = { WORKER_DISK_FULL: 'disk-full', WORKER_DISK_READ_ONLY: 'disk-read-only' };

/**
 * `missing`: no row for the job in this deployment's database. `lost`: another worker owns it now.
 * `disk-full`, `disk-read-only`: handed back because this machine's DATA_DIR filled up, or turned read-only.
 */
export type Outcome = 'succeeded' | 'failed' | 'cancelled' | 'skipped' | 'handed-back' | 'disk-full' | 'disk-read-only' | 'lost' | 'missing';

export interface RunningJob {
  jobId: string;
  abort(reason: AbortReason): void;
  done: Promise<Outcome>;
}

/** Reasons in order of precedence: a later one never overrides an earlier one. */
const PRECEDENCE: AbortReason[] = ['lost', 'cancel', 'timeout', 'shutdown'];

/** How long an export asked to stop may take to reach its next batch before its thread is terminated. */
const EXPORT_STOP_GRACE_MS = 10_000;
/**
 * How long a running job's row goes unwritten at most: well inside the reconciler's grace (15 s),
 * which leaves a row written within it alone.
 */
const HEARTBEAT_MS = 5_000;

export function startJob(ctx: RunnerContext, jobId: string): RunningJob {
  let abortReason: AbortReason | null = null;
  let thread: Worker | null = null;
  let onAbort: ((reason: AbortReason) => void) | null = null;
  const abort = (reason: AbortReason) => {
    // A shutdown must not turn a user's cancel into a hand-back, nor anything turn a lost job
    // back into one this worker may write.
    if (abortReason && PRECEDENCE.indexOf(abortReason) <= PRECEDENCE.indexOf(reason)) return;
    abortReason = reason;
    thread?.postMessage({ type: 'abort' } satisfies ToThread);
    onAbort?.(reason);
  };
  const done = run(ctx, jobId, {
    reason: () => abortReason,
    attach: (t, hook) => {
      thread = t;
      onAbort = hook;
      if (abortReason) {
        t.postMessage({ type: 'abort' } satisfies ToThread);
        hook(abortReason);
      }
    },
    abort,
  });
  return { jobId, abort, done };
}

interface Control {
  reason(): AbortReason | null;
  attach(t: Worker, onAbort: (reason: AbortReason) => void): void;
  abort(reason: AbortReason): void;
}

/** The newest of `jobId`'s checkpoints that can be fetched from the store, downloaded into `dir`. */
async function fetchNewestCheckpoint(
  ctx: RunnerContext,
  jobId: string,
  dir: string,
): Promise<{ found: { key: string; step: number; dir: string } | null; recorded: number }> {
  const rows = await ctx.prisma.checkpoint.findMany({ where: { jobId }, orderBy: { step: 'desc' }, take: 20 });
  for (const row of rows) {
    const local = path.join(dir, `step-${row.step}`);
    try {
      await downloadPrefix(ctx.store, row.key, local);
      return { found: { key: row.key, step: row.step, dir: local }, recorded: rows.length };
    } catch (err) {
      // Missing or damaged: try an older one. Anything else (the store unreachable) is not the
      // job's fault: the worker retries the job later.
      if (!(err instanceof ArtifactNotFoundError || err instanceof ArtifactCorruptError)) throw err;
      ctx.log.warn({ jobId, key: row.key, err: err.message }, 'checkpoint could not be fetched from the artifact store; trying an older one');
    }
  }
  return { found: null, recorded: rows.length };
}

async function run(ctx: RunnerContext, jobId: string, control: Control): Promise<Outcome> {
  const { log } = ctx;
  const claimed = await claim(ctx.prisma, jobId, ctx.wake);
  if (claimed.kind === 'missing') return 'missing';
  if (claimed.kind === 'not-runnable') {
    log.info({ jobId, status: claimed.status }, 'job not runnable (cancelled or finished); skipped');
    return 'skipped';
  }
  const { owner, config, attempt } = claimed;
  const deadline = claimed.startedAt.getTime() + ctx.jobTimeoutMs;
  const scratch = path.join(ctx.workDir, jobId);
  await fs.promises.rm(scratch, { recursive: true, force: true });
  await fs.promises.mkdir(scratch, { recursive: true });
  try {
    return await runClaimed(ctx, control, { jobId, owner, config, attempt, deadline, scratch });
  } finally {
    await fs.promises.rm(scratch, { recursive: true, force: true }).catch((err) => log.warn({ jobId, err }, 'scratch directory not removed'));
  }
}

interface Claimed {
  jobId: string;
  owner: JobOwner;
  config: TrainingConfig;
  attempt: number;
  deadline: number;
  scratch: string;
}

async function runClaimed(ctx: RunnerContext, control: Control, job: Claimed): Promise<Outcome> {
  const { log, store } = ctx;
  const { jobId, owner, config } = job;

  /** An owner write that ends the job. Once another worker claimed it, it fails: `lost`, nothing written. */
  const ending = async (write: () => Promise<Outcome>): Promise<Outcome> => {
    try {
      return await write();
    } catch (err) {
      if (!(err instanceof OwnershipLostError)) throw err;
      log.warn({ jobId }, err.message);
      return 'lost';
    }
  };
  const fail = (code: string, message: string): Promise<Outcome> => {
    log.error({ jobId, code }, message);
    return ending(async () => (await owner.fail(code, message), 'failed'));
  };
  const timeoutMessage = (step: number | null) =>
    `the job ran longer than its wall-clock limit (JOB_TIMEOUT_MS ${ctx.jobTimeoutMs} ms since it first started)` +
    (step === null ? '' : `; stopped at step ${step}, its last checkpoint kept`);

  if (Date.now() >= job.deadline) return fail('JOB_TIMEOUT', timeoutMessage(null));

  const resume = await fetchNewestCheckpoint(ctx, jobId, path.join(job.scratch, 'resume'));
  if (resume.recorded > 0 && !resume.found) {
    // Restarting from step 0 would silently throw away the job's progress and its curve.
    return fail('CHECKPOINT_UNAVAILABLE', `none of the job's ${resume.recorded} recorded checkpoints could be fetched from the ${store.kind} artifact store`);
  }
  let init: { key: string; dir: string } | null = null;
  // A resumed job has its own weights: the job it first started from may be gone by now.
  if (config.init.fromJob && !resume.found) {
    const from = await fetchNewestCheckpoint(ctx, config.init.fromJob, path.join(job.scratch, 'init'));
    if (!from.found) return fail('INIT_CHECKPOINT_MISSING', `job ${config.init.fromJob} has no checkpoint in the ${store.kind} artifact store to start from`);
    init = from.found;
  }
  const input: ThreadInput = {
    jobId,
    config,
    workDir: path.join(job.scratch, 'run'),
    dataRoot: ctx.dataRoot,
    resumeFrom: resume.found?.dir ?? null,
    initFrom: init?.dir ?? null,
    modelDir: path.join(job.scratch, 'model'),
    tmpDir: job.scratch,
    trainThreads: ctx.trainThreads ?? 1,
    budget: ctx.budget,
    wasmSimd: ctx.wasmSimd ?? true,
  };
  fs.mkdirSync(input.workDir, { recursive: true });
  log.info(
    {
      jobId,
      attempt: job.attempt,
      resumeFrom: resume.found?.key ?? null,
      resumeStep: resume.found?.step ?? null,
      initFrom: init?.key ?? null,
      store: store.kind,
    },
    resume.found ? 'resuming job' : 'starting job',
  );

  const thread = new Worker(ctx.threadUrl, { workerData: input });
  let phase: 'train' | 'export' = 'train';
  // A time limit or a user's cancel ends the export (nothing of it is stored yet), whether it
  // arrives during the export or before it but after the last step looked. A shutdown lets it
  // finish. The export stops between its batches; the thread is terminated only if it has not
  // ended within EXPORT_STOP_GRACE_MS, as terminating it while ONNX Runtime's native code runs
  // aborted the whole worker process ("terminate called after throwing an instance of
  // 'Napi::Error'", seen once in CI).
  let stopRequested = false;
  const endExportIfStopped = () => {
    const reason = control.reason();
    if ((reason === 'timeout' || reason === 'cancel') && phase === 'export' && !stopRequested) {
      stopRequested = true;
      reply({ type: 'stop-export' });
      setTimeout(() => void thread.terminate(), ctx.exportStopGraceMs ?? EXPORT_STOP_GRACE_MS).unref();
    }
  };
  control.attach(thread, endExportIfStopped);
  const timer = setTimeout(() => control.abort('timeout'), Math.max(0, job.deadline - Date.now()));
  timer.unref();

  let trained: PostedTrainResult | null = null;
  let final: Promise<Outcome> | null = null;
  /**
   * The job's outcome, decided while the thread may still run for a while (tfjs releasing its
   * memory): its write is awaited once the thread has exited. A write that fails meanwhile (the
   * database away, its disk full) must reach the caller then, which retries the job later; left
   * unhandled until then, Node ended the whole worker process.
   */
  const decide = (outcome: Promise<Outcome>) => {
    outcome.catch(() => {});
    final = outcome;
  };
  let chain: Promise<unknown> = Promise.resolve();
  const reply = (m: ToThread) => {
    try {
      thread.postMessage(m);
    } catch {
      // The thread is gone; nothing waits for the answer.
    }
  };

  // A store away (or read-only) for a minute failed every checkpoint of a fast job: 34 error lines
  // with their stacks in 45 s. Said when it starts, each minute, and when one is stored again.
  const checkpointFailures = new FailureLog(log, `storing checkpoints in the ${store.kind} artifact store`, { jobId });
  const storeCheckpoint = async (c: { path: string; step: number; epoch: number }): Promise<boolean> => {
    if (control.reason() === 'lost') return false;
    const key = checkpointKey(jobId, c.step, owner.token);
    try {
      await uploadDir(store, key, c.path);
    } catch (err) {
      // Training goes on; the next checkpoint is tried again. Resume uses the newest stored one.
      checkpointFailures.failed(err);
      return false;
    }
    checkpointFailures.succeeded();
    try {
      const gone = await owner.checkpoint({ step: c.step, epoch: c.epoch, key }, config.training.keepCheckpoints);
      for (const k of gone) await store.delete(k).catch((err) => log.warn({ jobId, key: k, err }, 'old checkpoint not deleted'));
      return true;
    } catch (err) {
      await store.delete(key).catch(() => {});
      throw err;
    }
  };

  const handle = async (m: Exclude<FromThread, { type: 'step' | 'phase' }>): Promise<void> => {
    switch (m.type) {
      case 'start': {
        const { info } = m;
        // A resumed run redoes the steps after its checkpoint: the dead run's points for them go.
        await owner.start({ backend: info.backend, totalSteps: info.totalSteps, startStep: info.startStep, dataset: toJobDataset(info) });
        log.info({ jobId, ...info, classes: info.classes.length }, 'training started');
        return;
      }
      case 'eval':
        await owner.evaluated(m.metric);
        log.info({ jobId, ...m.metric }, 'evaluated');
        return;
      case 'checkpoint': {
        let stored = false;
        try {
          stored = await storeCheckpoint(m.checkpoint);
        } finally {
          reply({ type: 'checkpoint-stored', step: m.checkpoint.step, stored });
        }
        return;
      }
      case 'warning':
        log.warn({ jobId, code: m.warning.code }, m.warning.message);
        await owner.warning(m.warning);
        return;
      case 'log':
        log[m.level]({ jobId, ...(m.extra ?? {}) }, m.msg);
        return;
      case 'trained':
        trained = m.result;
        if (control.reason() === 'lost') {
          log.warn({ jobId, step: m.result.step }, 'training stopped: another worker owns the job now; nothing recorded');
          decide(Promise.resolve('lost'));
          return;
        }
        await owner.trained({ step: m.result.step, epoch: m.result.epoch, backend: m.result.backend });
        if (m.result.status === 'stopped') decide(stopped(m.result.step));
        return;
      case 'exporting':
        phase = 'export';
        log.info({ jobId }, 'training finished; exporting the int8 model');
        endExportIfStopped();
        return;
      case 'exported':
        decide(finish(m.result));
        return;
      case 'error':
        // The export stopped as asked: the job ends as the cancel or the time limit says.
        if (m.phase === 'export' && stopRequested) decide(stopped(trained ? trained.step : null));
        // Stopped while it read its data set: no step taken, nothing new to keep.
        else if (m.code === STOPPED_BEFORE_TRAINING && control.reason()) decide(stopped(null));
        else if (DISK_OUTCOMES[m.code] && ctx.onDiskFull === 'hand-back') decide(handBackForDisk(DISK_OUTCOMES[m.code], m.cause));
        else decide(fail(m.code, `${m.phase === 'export' ? 'export' : 'training'} failed: ${m.message}`));
        return;
    }
  };

  const stopped = (step: number | null): Promise<Outcome> => {
    switch (control.reason()) {
      case 'lost':
        return Promise.resolve('lost');
      case 'timeout':
        return fail('JOB_TIMEOUT', timeoutMessage(step));
      case 'shutdown':
        return ending(() => owner.stop('shutdown'));
      default:
        return ending(() => owner.stop('cancel'));
    }
  };

  /** Back to the queue with its stored checkpoints, unless the user cancelled meanwhile. */
  const handBackForDisk = (outcome: Outcome, cause: string): Promise<Outcome> => {
    // The cause only: the job's failure message tells a user to post it again, which a hand-back makes needless.
    log.error({ jobId, err: cause }, `DATA_DIR ${diskOutcomeWords(outcome)}; handing the job back to the queue`);
    return ending(async () => ((await owner.stop('shutdown')) === 'handed-back' ? outcome : 'cancelled'));
  };

  const finish = async (exported: ExportJobResult): Promise<Outcome> => {
    const modelId = randomUUID();
    const prefix = modelPrefix(modelId);
    try {
      await uploadDir(store, prefix, input.modelDir);
    } catch (err) {
      return fail('ARTIFACT_STORE_FAILED', `the exported model could not be stored in the ${store.kind} artifact store: ${(err as Error).message}`);
    }
    let outcome: Outcome;
    try {
      const r = await owner.succeed(
        newModelFromManifest(exported.manifest, {
          id: modelId,
          onnxKey: `${prefix}/${path.basename(exported.onnxPath)}`,
          manifestKey: `${prefix}/${path.basename(exported.manifestPath)}`,
        }),
      );
      outcome = r.outcome;
      if (r.replacedPrefix) await store.delete(r.replacedPrefix).catch(() => {});
    } catch (err) {
      await store.delete(prefix).catch(() => {});
      if (err instanceof OwnershipLostError) return 'lost';
      throw err;
    }
    // Cancelled while exporting: no Model row points at the files, and none stay behind.
    if (outcome === 'cancelled') await store.delete(prefix).catch((err) => log.warn({ jobId, err }, 'model files of a cancelled job not deleted'));
    log.info({ jobId, outcome, modelId, int8Top1: exported.manifest.accuracy.int8Top1, agreement: exported.manifest.accuracy.agreement }, 'job finished');
    return outcome;
  };

  const writeFailures = new FailureLog(log, 'recording training progress', { jobId });
  /** Runs `work` after everything received before it; a failed write is logged (its steps are tried again with the next), or ends ownership. */
  const enqueue = (work: () => Promise<void>) => {
    chain = chain
      .then(work)
      .catch((err) => {
        if (err instanceof OwnershipLostError) {
          log.warn({ jobId }, `${err.message}; stopping`);
          control.abort('lost');
        } else {
          writeFailures.failed(err);
        }
      })
      // Its work is done once the outcome is known; don't wait for tfjs to release its handles.
      .then(() => (final ? thread.terminate() : undefined));
  };
  let lastWrite = Date.now();
  /**
   * A write of the row that reads its status back (steps, a heartbeat, a phase): `cancelling` is a
   * cancel whose Redis message we missed, so stop; and the database answers again (other work, a
   * step message, may touch none).
   */
  const ownRow = async (write: Promise<'running' | 'cancelling'>) => {
    if ((await write) === 'cancelling') control.abort('cancel');
    writeFailures.succeeded();
    lastWrite = Date.now();
  };
  const stepWrites = new StepWrites({
    intervalMs: ctx.progressWriteIntervalMs,
    enqueue,
    write: async (steps) => {
      if (control.reason() === 'lost') return;
      await ownRow(owner.steps(steps));
    },
    onDropped: (steps, err) =>
      log.error({ jobId, firstStep: steps[0].step, lastStep: steps.at(-1)!.step, err }, `${steps.length} steps not recorded: their writes failed for minutes`),
  });
  // An evaluation or the export writes no step for minutes (2,000 validation images at 1.0@224:
  // 64-129 s). Unwritten that long, the row looked like a dead worker's to the reconciler, which
  // fails a running job whose queue entry is gone (Redis restarted without persistence) once its
  // row is older than its grace; and a cancel whose Redis message was lost waited for the next step.
  const heartbeatMs = ctx.heartbeatMs ?? HEARTBEAT_MS;
  const heartbeat = setInterval(() => {
    if (Date.now() - lastWrite < heartbeatMs) return;
    enqueue(async () => {
      if (final || control.reason() === 'lost') return;
      await ownRow(owner.heartbeat());
    });
  }, heartbeatMs);
  heartbeat.unref();
  // What reading the data set, an evaluation or the export is doing, on the row instead of a bare "step 60/60".
  const phaseWrites = new PhaseWrites({
    intervalMs: ctx.progressWriteIntervalMs,
    enqueue,
    write: async (phase) => {
      if (final || control.reason() === 'lost') return;
      // The steps before the phase are on the row first; they would clear it after.
      await stepWrites.flush();
      await ownRow(owner.phase(phase));
    },
  });
  thread.on('message', (m: FromThread) => {
    if (m.type === 'step') return stepWrites.add(m.metric);
    if (m.type === 'phase') return phaseWrites.report(m.phase);
    // The steps reported before this message are written before it is handled.
    enqueue(() => stepWrites.flush());
    enqueue(() => handle(m));
  });

  const exitCode = await new Promise<number>((resolve) => {
    thread.on('error', (err) => log.error({ jobId, err }, 'training thread crashed'));
    thread.on('exit', resolve);
  });
  clearTimeout(timer);
  clearInterval(heartbeat);
  phaseWrites.close();
  enqueue(() => stepWrites.flush());
  await chain;
  if (final) return final;
  const reason = control.reason();
  if (reason === 'lost') return 'lost';
  if (reason === 'timeout') return fail('JOB_TIMEOUT', timeoutMessage(trained ? (trained as PostedTrainResult).step : null));
  if (reason === 'shutdown' || reason === 'cancel') return stopped(null);
  return fail('TRAINER_CRASHED', `training thread exited (code ${exitCode}) before reporting a result`);
}
