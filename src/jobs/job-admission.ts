// Admission control: a job's peak memory and disk, estimated from its config before anything is
// stored or queued, against the worker's budget (JOB_MEMORY_BUDGET_MB, JOB_DISK_BUDGET_MB). A job
// over budget is a 400 JOB_TOO_LARGE naming the fields that drive the estimate, instead of a
// worker that aborts hours later (or fills its disk).
//
// The estimates are linear models fitted to measurements of the real trainer (wasm backend, QAT):
// `npx tsx bench/job-memory.ts` trains each of a grid of configs for a few steps in its own
// process and records the wasm heap (the memory that the 4 GiB wasm32 limit applies to) and the
// checkpoint and model files; the fitted coefficients and the grid are in the README
// ("Admission control"). Training memory is dominated by the activations saved for backprop:
// per image, the sum of every conv layer's output elements (`activationsPerImage`), times the batch.
import { allConvs, buildArch, type ArchSpec } from '../ml/mobilenet-arch.js';
import type { IssueItem } from './job-errors.js';
import type { Settings } from '../config/settings.js';
import type { TrainingConfig } from '../config/training-config.js';
import { totalmem } from 'node:os';

/**
 * Upper envelopes of bench/job-memory.ts's measurements (wasm heap, MiB; the README has the grid).
 * Training: per extra activation element in the batch 14-16.7 B on the larger batches (float32
 * activations, their gradients and the copies saved for backprop; batch norm with its activation
 * keeps only its input), more on small ones because the heap grows in steps; the constant sits
 * above every measured point and within 1.3x of each. Export and evaluation: the 1.0@224 export
 * never grew the heap past a batch-4 training run's 887 MiB, about 106 B per activation element of
 * one image.
 */
export const MEMORY_MODEL = {
  baseBytes: 64 * 2 ** 20,
  /** Training: heap bytes per activation element per image in the batch. */
  trainBytesPerActivation: 17.5,
  /** Training: heap bytes per parameter (weights, gradients, momentum, folded and fake-quant copies). */
  bytesPerParam: 60,
  /** Export and evaluation: heap bytes per activation element of one image. */
  exportBytesPerActivation: 110,
};

/** Fitted to the same runs: checkpoint 7.96 B/parameter - 7 KiB; model directory 1.02 B/parameter + 50 KiB. */
export const DISK_MODEL = {
  /** A checkpoint: float32 weights + momentum (+ BN statistics, EMA ranges, config). */
  checkpointBytesPerParam: 8,
  checkpointBaseBytes: 64 * 1024,
  /** The exported model directory: int8 ONNX (about a byte per weight) + manifest. */
  modelBytesPerParam: 1.1,
  modelBaseBytes: 64 * 1024,
};

/** Classes assumed for an image folder whose class folders were not counted. */
export const IMAGE_FOLDER_CLASSES_BOUND = 1000;

/** The fewest classes a data set has (an image folder with one class is refused when loaded). */
export const FEWEST_CLASSES = 2;

/** `folderClasses`: an image folder's class folders as counted at admission (an upper bound on its classes). */
export function classCount(dataset: TrainingConfig['dataset'], folderClasses?: number): number {
  if (dataset.type === 'synthetic') return dataset.classes;
  if (dataset.type === 'fashion-mnist') return 10;
  return Math.max(FEWEST_CLASSES, Math.min(folderClasses ?? IMAGE_FOLDER_CLASSES_BOUND, IMAGE_FOLDER_CLASSES_BOUND));
}

export function archOf(config: TrainingConfig, folderClasses?: number): ArchSpec {
  return buildArch({ ...config.model, numClasses: classCount(config.dataset, folderClasses) });
}

/** Output elements of every conv layer for one image, plus the input (SAME padding: ceil(h / stride)). */
export function activationsPerImage(arch: ArchSpec): number {
  let h = arch.inputSize;
  let total = 3 * h * h;
  for (const c of allConvs(arch)) {
    h = Math.ceil(h / c.stride);
    total += h * h * c.outC;
  }
  return total + arch.dense.outF;
}

export function parameterCount(arch: ArchSpec): number {
  let n = 0;
  for (const c of allConvs(arch)) n += (c.kind === 'conv' ? c.k * c.k * c.inC * c.outC : c.k * c.k * c.inC) + 4 * c.outC;
  return n + arch.dense.inF * arch.dense.outF + arch.dense.outF;
}

export interface JobEstimate {
  activationsPerImage: number;
  parameters: number;
  trainMemoryBytes: number;
  exportMemoryBytes: number;
  /** Peak wasm heap: training or export, whichever is larger. */
  memoryBytes: number;
  checkpointBytes: number;
  /** Checkpoints kept, one more being written, and the exported model. */
  diskBytes: number;
}

export function estimateJob(config: TrainingConfig, folderClasses?: number): JobEstimate {
  const arch = archOf(config, folderClasses);
  const acts = activationsPerImage(arch);
  const params = parameterCount(arch);
  const paramBytes = MEMORY_MODEL.baseBytes + MEMORY_MODEL.bytesPerParam * params;
  const trainMemoryBytes = paramBytes + MEMORY_MODEL.trainBytesPerActivation * acts * config.training.batchSize;
  const exportMemoryBytes = paramBytes + MEMORY_MODEL.exportBytesPerActivation * acts;
  const checkpointBytes = DISK_MODEL.checkpointBaseBytes + DISK_MODEL.checkpointBytesPerParam * params;
  const modelBytes = DISK_MODEL.modelBaseBytes + DISK_MODEL.modelBytesPerParam * params;
  return {
    activationsPerImage: acts,
    parameters: params,
    trainMemoryBytes,
    exportMemoryBytes,
    memoryBytes: Math.max(trainMemoryBytes, exportMemoryBytes),
    checkpointBytes,
    diskBytes: (config.training.keepCheckpoints + 1) * checkpointBytes + modelBytes,
  };
}

export interface JobBudget {
  memoryBytes: number;
  diskBytes: number;
  /** Why `memoryBytes` is below JOB_MEMORY_BUDGET_MB, when it is (the machine's memory). */
  memoryNote?: string;
}

/** JOB_MEMORY_BUDGET_MB and JOB_DISK_BUDGET_MB, as the API and each worker read them. */
export function jobBudget(settings: Pick<Settings, 'limits'>): JobBudget {
  return { memoryBytes: settings.limits.jobMemoryBudgetBytes, diskBytes: settings.limits.jobDiskBudgetBytes };
}

/**
 * A worker process beside its wasm heap: the heap times this, plus PROCESS_BASE_BYTES. Measured
 * (max RSS against the estimate): the README demo (0.35@32, batch 32) 645 MiB for an estimated
 * 266 MiB heap; 1.0@224 at batch 32 on one thread 4.6-4.95 GB for 3840 MiB.
 */
const PROCESS_PER_HEAP_BYTE = 1.25;
const PROCESS_BASE_BYTES = 384 * 2 ** 20;

/**
 * The memory this process may use: the machine's, or less where a cgroup (a container, a systemd
 * unit) limits it. Node answers a huge number for "no limit".
 */
export function machineMemoryBytes(): number {
  const limit = process.constrainedMemory?.() ?? 0;
  return limit > 0 ? Math.min(limit, totalmem()) : totalmem();
}

/**
 * The budget on a machine of `machineBytes`: no larger a heap than the machine holds beside the
 * rest of the process. A job the machine cannot hold then fails JOB_TOO_LARGE at once, saying so,
 * where the kernel killed its worker without a word at every resume until the queue gave up (six
 * deaths in 4.5 min for 1.0@224 at batch 32 in a 1,200 MiB container, then "job stalled more
 * than allowable limit").
 */
export function budgetOnMachine(budget: JobBudget, machineBytes: number): JobBudget {
  const heap = Math.max(0, Math.floor((machineBytes - PROCESS_BASE_BYTES) / PROCESS_PER_HEAP_BYTE));
  if (heap >= budget.memoryBytes) return budget;
  return {
    ...budget,
    memoryBytes: heap,
    memoryNote: `the ${mib(machineBytes)} of memory this machine gives the worker hold a heap of ${mib(heap)} beside the rest of the process`,
  };
}

/** Bytes as whole MiB, rounded up (an estimate or a budget in a message). */
export const mib = (b: number) => `${Math.ceil(b / 2 ** 20)} MiB`;

const fieldsOf = (issues: IssueItem[]) => issues.map((i) => i.path).join(', ');

/** The first line of a refusal; the issues say by how much and what fits. */
export function tooLargeMessage(issues: IssueItem[]): string {
  return `the job is larger than this worker can run: ${fieldsOf(issues)}`;
}

/** A worker's refusal of a job it took: its data set's classes put it over the worker's budget. */
export class JobTooLargeError extends Error {
  readonly code = 'JOB_TOO_LARGE';
}

/**
 * The worker's admission, once the data set is loaded and its classes known: the API may not have
 * seen an image folder (the datasets live on the workers' machines), and a worker's budget is its own.
 */
export function assertFits(config: TrainingConfig, budget: JobBudget, classes: number): void {
  const issues = admissionIssues(config, budget, classes);
  if (issues.length)
    throw new JobTooLargeError(
      `the job is larger than this worker can run with the ${classes} classes of its data set: ${issues[0].message} (${fieldsOf(issues)})`,
    );
}

/** Empty when the job fits; otherwise one issue per field that drives an estimate over budget. */
export function admissionIssues(config: TrainingConfig, budget: JobBudget, folderClasses?: number): IssueItem[] {
  const e = estimateJob(config, folderClasses);
  const issues: IssueItem[] = [];
  if (e.memoryBytes > budget.memoryBytes) {
    const m = config.model;
    const shape = `width ${m.widthMultiplier} at ${m.inputSize} px`;
    const budgetText = mib(budget.memoryBytes) + (budget.memoryNote ? ` (${budget.memoryNote})` : '');
    if (e.exportMemoryBytes > budget.memoryBytes) {
      // Not a matter of batch size: one image's activations are too much at this width and size.
      const what = `exporting ${shape} needs about ${mib(e.exportMemoryBytes)}; the worker's budget is ${budgetText}`;
      issues.push({ path: 'model.inputSize', message: what }, { path: 'model.widthMultiplier', message: what });
    } else {
      const perImage = MEMORY_MODEL.trainBytesPerActivation * e.activationsPerImage;
      const fits = Math.floor((budget.memoryBytes - MEMORY_MODEL.baseBytes - MEMORY_MODEL.bytesPerParam * e.parameters) / perImage);
      const what = `training ${shape} at batch ${config.training.batchSize} needs about ${mib(e.trainMemoryBytes)}; the worker's budget is ${budgetText}`;
      issues.push(
        { path: 'training.batchSize', message: fits >= 1 ? `${what}: at most ${fits} fits` : `${what}: even batch 1 does not fit` },
        { path: 'model.inputSize', message: `${what} (a smaller input size needs less)` },
        { path: 'model.widthMultiplier', message: `${what} (a smaller width needs less)` },
      );
    }
  }
  if (e.diskBytes > budget.diskBytes) {
    const fits = Math.floor((budget.diskBytes - (DISK_MODEL.modelBaseBytes + DISK_MODEL.modelBytesPerParam * e.parameters)) / e.checkpointBytes) - 1;
    issues.push({
      path: 'training.keepCheckpoints',
      message: `${config.training.keepCheckpoints} checkpoints of ${mib(e.checkpointBytes)} and the model need about ${mib(e.diskBytes)}; the worker's disk budget is ${mib(budget.diskBytes)}${fits >= 1 ? `: keep at most ${fits}` : ''}`,
    });
  }
  return issues;
}
