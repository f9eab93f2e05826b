// Runs one training job for the worker: moves the row through its states, starts the training
// thread (resuming from the newest checkpoint when there is one), writes progress, metric points
// (upserted by step, so a resumed run never duplicates them), checkpoints and the Model row.
// A job is `succeeded` only after training AND export with verification succeeded and the Model
// row exists.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Prisma } from '../db/database.js';
import type { TrainingConfig } from '../jobs/training-config.js';
import type { TrainResult } from '../ml/train-api.js';
import type { ExportResult, FromThread, ThreadInput } from './thread-protocol.js';

export interface RunnerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RunnerContext {
  prisma: Prisma;
  artifactsDir: string;
  dataRoot: string;
  log: RunnerLogger;
  /** The compiled training thread (dist/queue/training-thread.js). */
  threadUrl: URL;
}

export type AbortReason = 'cancel' | 'shutdown';

/** Control signal: the worker is stopping; Bull should give the job to another worker. */
export class WorkerShutdownError extends Error {
  readonly code = 'WORKER_SHUTDOWN';
  constructor(jobId: string) {
    super(`worker shut down while running job ${jobId}; handed back to the queue`);
    this.name = 'WorkerShutdownError';
  }
}

export type Outcome = 'succeeded' | 'failed' | 'cancelled' | 'skipped' | 'handed-back';

export interface RunningJob {
  jobId: string;
  abort(reason: AbortReason): void;
  done: Promise<Outcome>;
}

export const jobWorkDir = (artifactsDir: string, jobId: string) => path.join(artifactsDir, 'jobs', jobId);
export const jobModelDir = (artifactsDir: string, jobId: string) => path.join(artifactsDir, 'models', jobId);

/** The newest checkpoint row whose directory still exists (older ones are pruned on disk). */
export async function newestCheckpoint(prisma: Prisma, jobId: string): Promise<{ path: string; step: number } | null> {
  const rows = await prisma.checkpoint.findMany({ where: { jobId }, orderBy: { step: 'desc' }, take: 20 });
  return rows.find((r) => fs.existsSync(r.path)) ?? null;
}

/** Claims the row (queued|running -> running). Returns null when the job must not run. */
async function claim(prisma: Prisma, jobId: string): Promise<{ config: TrainingConfig } | null> {
  for (let i = 0; i < 3; i++) {
    const row = await prisma.trainingJob.findUnique({ where: { id: jobId } });
    if (!row) return null;
    if (row.status === 'cancelling') {
      await prisma.trainingJob.updateMany({ where: { id: jobId, status: 'cancelling' }, data: { status: 'cancelled', finishedAt: new Date() } });
      return null;
    }
    if (row.status !== 'queued' && row.status !== 'running') return null; // cancelled while queued, or finished
    const { count } = await prisma.trainingJob.updateMany({
      where: { id: jobId, status: row.status },
      data: { status: 'running', attempts: { increment: 1 }, startedAt: row.startedAt ?? new Date(), errorCode: null, errorMessage: null },
    });
    if (count === 1) return { config: JSON.parse(row.config) as TrainingConfig };
  }
  return null;
}

export function startJob(ctx: RunnerContext, jobId: string): RunningJob {
  let abortReason: AbortReason | null = null;
  let thread: Worker | null = null;
  const abort = (reason: AbortReason) => {
    // A shutdown must not turn a user's cancel into a hand-back, so cancel wins.
    if (abortReason !== 'cancel') abortReason = reason;
    thread?.postMessage({ type: 'abort' });
  };
  const done = run(ctx, jobId, {
    reason: () => abortReason,
    attach: (t) => {
      thread = t;
      if (abortReason) t.postMessage({ type: 'abort' });
    },
    abort,
  });
  return { jobId, abort, done };
}

interface Control {
  reason(): AbortReason | null;
  attach(t: Worker): void;
  abort(reason: AbortReason): void;
}

async function run(ctx: RunnerContext, jobId: string, control: Control): Promise<Outcome> {
  const { prisma, log } = ctx;
  const claimed = await claim(prisma, jobId);
  if (!claimed) {
    log.info({ jobId }, 'job not runnable (cancelled or finished); skipped');
    return 'skipped';
  }
  const { config } = claimed;
  const fail = async (code: string, message: string): Promise<Outcome> => {
    log.error({ jobId, code }, message);
    await prisma.trainingJob.updateMany({
      where: { id: jobId, status: { in: ['running', 'cancelling'] } },
      data: { status: 'failed', errorCode: code, errorMessage: message.slice(0, 4000), finishedAt: new Date() },
    });
    return 'failed';
  };

  const resume = await newestCheckpoint(prisma, jobId);
  let initFrom: string | null = null;
  if (config.init.fromJob) {
    const init = await newestCheckpoint(prisma, config.init.fromJob);
    if (!init) return fail('INIT_CHECKPOINT_MISSING', `job ${config.init.fromJob} has no checkpoint on disk to start from`);
    initFrom = init.path;
  }
  const input: ThreadInput = {
    jobId,
    config,
    workDir: jobWorkDir(ctx.artifactsDir, jobId),
    dataRoot: ctx.dataRoot,
    resumeFrom: resume?.path ?? null,
    initFrom,
    modelDir: jobModelDir(ctx.artifactsDir, jobId),
  };
  fs.mkdirSync(input.workDir, { recursive: true });
  log.info({ jobId, resumeFrom: input.resumeFrom, initFrom }, resume ? 'resuming job' : 'starting job');

  const thread = new Worker(ctx.threadUrl, { workerData: input });
  control.attach(thread);

  let trained: TrainResult | null = null;
  let final: Promise<Outcome> | null = null;
  let chain: Promise<unknown> = Promise.resolve();

  const handle = async (m: FromThread): Promise<void> => {
    switch (m.type) {
      case 'start': {
        const { info } = m;
        // A resumed run redoes the steps after its checkpoint; drop the dead run's copies of them
        // so the curve is exactly this run's (upserts would overwrite them anyway).
        await prisma.metricPoint.deleteMany({ where: { jobId, step: { gt: info.startStep } } });
        await prisma.trainingJob.update({
          where: { id: jobId },
          data: { backend: info.backend, totalSteps: info.totalSteps, step: info.startStep },
        });
        log.info({ jobId, ...info, classes: info.classes.length }, 'training started');
        return;
      }
      case 'step': {
        const s = m.metric;
        await prisma.metricPoint.upsert({
          where: { jobId_step: { jobId, step: s.step } },
          create: { jobId, step: s.step, epoch: s.epoch, loss: s.loss, learningRate: s.learningRate, imagesPerSecond: s.imagesPerSecond },
          update: { epoch: s.epoch, loss: s.loss, learningRate: s.learningRate, imagesPerSecond: s.imagesPerSecond },
        });
        const { count } = await prisma.trainingJob.updateMany({
          where: { id: jobId, status: 'running' },
          data: { step: s.step, epoch: s.epoch, imagesPerSecond: s.imagesPerSecond },
        });
        // The row left `running`: a cancel whose Redis message we missed. Stop at this step.
        if (count === 0) control.abort('cancel');
        return;
      }
      case 'eval': {
        const e = m.metric;
        const scores = { top1: e.top1, top5: e.top5, floatTop1: e.floatTop1 ?? null };
        await prisma.metricPoint.upsert({
          where: { jobId_step: { jobId, step: e.step } },
          create: { jobId, step: e.step, epoch: e.epoch, ...scores },
          update: scores,
        });
        log.info({ jobId, ...e }, 'evaluated');
        return;
      }
      case 'checkpoint': {
        const c = m.checkpoint;
        await prisma.checkpoint.upsert({
          where: { jobId_step: { jobId, step: c.step } },
          create: { jobId, step: c.step, epoch: c.epoch, path: c.path },
          update: { epoch: c.epoch, path: c.path, createdAt: new Date() },
        });
        // The trainer keeps only the newest keepCheckpoints directories; drop the rows of the
        // ones it pruned so the table lists what can actually be resumed from.
        const stale = await prisma.checkpoint.findMany({ where: { jobId }, orderBy: { step: 'desc' }, skip: config.training.keepCheckpoints, select: { step: true } });
        if (stale.length > 0) await prisma.checkpoint.deleteMany({ where: { jobId, step: { in: stale.map((r) => r.step) } } });
        return;
      }
      case 'warning':
        log.warn({ jobId, code: m.warning.code }, m.warning.message);
        await prisma.trainingJob.update({ where: { id: jobId }, data: { warnings: { increment: 1 } } });
        return;
      case 'log':
        log[m.level]({ jobId, ...(m.extra ?? {}) }, m.msg);
        return;
      case 'trained':
        trained = m.result;
        await prisma.trainingJob.update({
          where: { id: jobId },
          data: { step: m.result.step, epoch: m.result.epoch, backend: m.result.backend },
        });
        if (m.result.status === 'stopped') final = stopped();
        return;
      case 'exporting':
        log.info({ jobId }, 'training finished; exporting the int8 model');
        return;
      case 'exported':
        final = finish(m.result);
        return;
      case 'error':
        final = fail(m.code, `${m.phase === 'export' ? 'export' : 'training'} failed: ${m.message}`);
        return;
    }
  };

  const stopped = async (): Promise<Outcome> => {
    if (control.reason() === 'shutdown') {
      // Back to queued unless the user cancelled meanwhile; Bull re-queues the job.
      const { count } = await prisma.trainingJob.updateMany({ where: { id: jobId, status: 'running' }, data: { status: 'queued' } });
      if (count === 1) return 'handed-back';
    }
    await prisma.trainingJob.updateMany({
      where: { id: jobId, status: { in: ['running', 'cancelling'] } },
      data: { status: 'cancelled', finishedAt: new Date() },
    });
    return 'cancelled';
  };

  const finish = async (exported: ExportResult): Promise<Outcome> => {
    const result = trained!;
    const now = new Date();
    const outcome = await prisma.$transaction(async (tx) => {
      const row = await tx.trainingJob.findUnique({ where: { id: jobId }, select: { status: true } });
      if (row?.status === 'cancelling') {
        await tx.trainingJob.update({ where: { id: jobId }, data: { status: 'cancelled', finishedAt: now } });
        return 'cancelled' as const;
      }
      await tx.model.upsert({
        where: { jobId },
        create: {
          id: randomUUID(),
          jobId,
          onnxPath: exported.onnxPath,
          manifestPath: exported.manifestPath,
          sizeBytes: exported.sizeBytes,
          float32SizeBytes: exported.float32SizeBytes,
          sha256: exported.sha256,
          inputSize: exported.inputSize ?? config.model.inputSize,
          classes: JSON.stringify(exported.classes ?? result.classes),
          floatTop1: exported.floatTop1 ?? null,
          int8Top1: exported.int8Top1 ?? null,
          agreement: exported.agreement ?? null,
        },
        update: {
          onnxPath: exported.onnxPath,
          manifestPath: exported.manifestPath,
          sizeBytes: exported.sizeBytes,
          float32SizeBytes: exported.float32SizeBytes,
          sha256: exported.sha256,
          floatTop1: exported.floatTop1 ?? null,
          int8Top1: exported.int8Top1 ?? null,
          agreement: exported.agreement ?? null,
        },
      });
      await tx.trainingJob.update({ where: { id: jobId }, data: { status: 'succeeded', finishedAt: now } });
      return 'succeeded' as const;
    });
    // Cancelled while exporting: the files were written but no Model row points at them; a
    // cancelled job leaves no model behind to be found on disk either.
    if (outcome === 'cancelled') await fs.promises.rm(input.modelDir, { recursive: true, force: true });
    log.info({ jobId, outcome, int8Top1: exported.int8Top1, agreement: exported.agreement }, 'job finished');
    return outcome;
  };

  thread.on('message', (m: FromThread) => {
    chain = chain
      .then(() => handle(m))
      .catch((err) => log.error({ jobId, err }, 'failed to record training progress'))
      // Its work is done once the outcome is known; don't wait for tfjs to release its handles.
      .then(() => (final ? thread.terminate() : undefined));
  });

  const exitCode = await new Promise<number>((resolve) => {
    thread.on('error', (err) => log.error({ jobId, err }, 'training thread crashed'));
    thread.on('exit', resolve);
  });
  await chain;
  if (final) return final;
  if (control.reason() === 'shutdown') return stopped();
  return fail('TRAINER_CRASHED', `training thread exited (code ${exitCode}) before reporting a result`);
}
