// Messages between the worker process (Bull, Prisma, Redis) and its training thread (tfjs).
// Training runs in a worker_thread so that multi-second steps never block the event loop that
// renews Bull's job lock and listens for cancel messages.
import type { CheckpointInfo, EvalMetric, Phase, StepMetric, TrainResult, TrainStartInfo, TrainWarning } from '../ml/train-api.js';
import type { TrainingConfig } from '../config/training-config.js';
import type { ExportJobResult } from '../export/export-job.js';
import type { JobBudget } from '../jobs/job-admission.js';
import { isDiskFull, isDiskReadOnly } from './disk-room.js';

export interface ThreadInput {
  jobId: string;
  config: TrainingConfig;
  workDir: string;
  dataRoot: string;
  resumeFrom: string | null;
  initFrom: string | null;
  /** Where the exported int8 model goes. */
  modelDir: string;
  /** Where files needed only for a moment go: this job's scratch (not /tmp, which a read-only root filesystem lacks). */
  tmpDir: string;
  /** TRAIN_THREADS: threads each step is split over; with 2 or more, batches are also rendered in a thread of their own. */
  trainThreads: number;
  /** JOB_MEMORY_BUDGET_MB and JOB_DISK_BUDGET_MB of this worker: checked again with the data set's real classes. */
  budget: JobBudget;
  /** QATSERVE_WASM_SIMD: the wasm-training kernels' SIMD paths (the ML code reads no settings itself). */
  wasmSimd: boolean;
}

export type ToThread =
  | { type: 'abort' }
  /** Stop the export between batches (a user's cancel or the time limit; a shutdown lets it finish). */
  | { type: 'stop-export' }
  /**
   * Answer to a `checkpoint` message: the worker has put the checkpoint in the artifact store (or
   * failed to, `stored: false`). The trainer waits for it, so the local copy stays until the upload
   * is done and a checkpoint is only reported once it can be resumed from on another machine.
   */
  | { type: 'checkpoint-stored'; step: number; stored: boolean };

/** The trainer's result as the thread posts it: without the logits and the data set the export keeps. */
export type PostedTrainResult = Omit<TrainResult, 'evalLogits' | 'dataset'>;

export type FromThread =
  | { type: 'start'; info: TrainStartInfo }
  | { type: 'step'; metric: StepMetric }
  | { type: 'eval'; metric: EvalMetric }
  /** Reading the data set, an evaluation or the export, as it goes (the worker writes it at most once a second); null when it ends. */
  | { type: 'phase'; phase: Phase | null }
  | { type: 'checkpoint'; checkpoint: CheckpointInfo }
  | { type: 'warning'; warning: TrainWarning }
  | { type: 'log'; level: 'info' | 'warn'; msg: string; extra?: object }
  | { type: 'trained'; result: PostedTrainResult }
  | { type: 'exporting' }
  /** exportJobModel's result as is (structured-cloned): the files and their manifest, which the worker records as the Model row. */
  | { type: 'exported'; result: ExportJobResult }
  | { type: 'error'; phase: 'train' | 'export'; code: string; message: string; cause: string };

/** The code of a run the thread stopped as asked before it took a step (its data set's scan cut short). */
export const STOPPED_BEFORE_TRAINING = 'TRAINING_STOPPED';

/**
 * The code and message of an error the thread reports, and its own message as `cause` (for a log
 * line when the worker does not end the job with it). A full or read-only disk is the worker's, not the job's:
 * its raw `ENOSPC: no space left on device, write` did not say whose disk, or what to do. Any other
 * system call's error is the fallback code with the call's message: `EACCES` or `EIO` is no code of
 * this API a client could look up.
 */
export function threadError(err: unknown, fallback: string): { code: string; message: string; cause: string } {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (isDiskFull(err)) {
    return {
      code: 'WORKER_DISK_FULL',
      message: `the worker's disk (DATA_DIR) is full (${message}); free space on that machine or lower training.keepCheckpoints, then post the job again`,
      cause: message,
    };
  }
  if (isDiskReadOnly(err)) {
    return {
      code: 'WORKER_DISK_READ_ONLY',
      message: `the worker's disk (DATA_DIR) turned read-only (${message}), most often after a disk error on that machine; post the job again: it runs on a worker that can write`,
      cause: message,
    };
  }
  // A stop before the first step (the data set's scan cut short): the worker ends the job as asked.
  if ((err as Error | null)?.name === 'AbortError') return { code: STOPPED_BEFORE_TRAINING, message, cause: message };
  const systemError = typeof (err as { syscall?: unknown } | null)?.syscall === 'string';
  return { code: typeof code === 'string' && !systemError ? code : fallback, message, cause: message };
}
