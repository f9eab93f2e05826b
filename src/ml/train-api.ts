// The contract between the training engine and whoever drives it (the queue worker, the
// `qatserve train` command, benchmarks). The engine knows nothing of Fastify, Prisma or Bull: it
// reports through these callbacks and stops when `signal` aborts.
import type { TrainingConfig } from '../config/training-config.js';
import type { Logger } from '../logger.js';
import type { ForwardMode } from './mobilenet-v2.js';
import type { QuantGraph } from './quant-graph.js';
import type { FloatGraph } from './float-graph.js';
import type { Dataset } from '../data/index.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface TrainStartInfo {
  backend: BackendName;
  /** Steps in the whole run (epochs x stepsPerEpoch, capped by maxSteps). */
  totalSteps: number;
  stepsPerEpoch: number;
  /** 0 for a fresh run, the checkpoint's step when resuming. */
  startStep: number;
  numTrain: number;
  numVal: number;
  classes: string[];
  /** How the data set was read: "imagefolder pets: 37 classes, 3312 train / 368 val (0.1 held out)". */
  dataset: string;
}

/** One optimizer step. `step` counts from 1; metric points are unique per (job, step). */
export interface StepMetric {
  step: number;
  epoch: number; // 1-based epoch the step belongs to
  loss: number;
  learningRate: number;
  imagesPerSecond: number;
}

/** Validation result at an epoch end (and at the end of the run). */
export interface EvalMetric {
  step: number;
  epoch: number;
  /** Top-1 / top-5 of the model as it will be exported (fake-quant when quantization is on). */
  top1: number;
  top5: number;
  /** Float top-1, reported when quantization is delayed or disabled (fake quant switched off). */
  floatTop1?: number;
}

export interface CheckpointInfo {
  /** Directory of the checkpoint (written atomically: temp dir, then rename). */
  path: string;
  step: number;
  epoch: number;
}

export interface TrainWarning {
  code: string; // e.g. 'IMAGE_UNREADABLE'
  message: string;
}

/**
 * What a run does between steps, while it lasts: an evaluation or the export takes minutes at
 * 224 px (2,000 validation images: 40-58 s per evaluation on one thread), reading a large image
 * folder as long before the first step, with no step to show.
 */
export interface Phase {
  /**
   * `preparing`: the data set read before the first step (an image folder's headers); `evaluating`:
   * validation accuracy after an epoch (or the last step); `exporting`: the int8 file built,
   * verified, scored and written.
   */
  name: 'preparing' | 'evaluating' | 'exporting';
  /** The part under way, in words ("int8 top-1 on the validation split"). */
  task: string;
  /** Images done and in all for this task; null for a task not counted in images. */
  done: number | null;
  total: number | null;
}

/** Reports the phase under way; null once the run is back at its steps (or the phase ended). */
export type PhaseListener = (phase: Phase | null) => void;

/** A phase in a line (no newline): its task and, with `done`, the images done so far (`qatserve train`, bench/serve-job.ts). */
export function phaseLine(p: Phase, withDone: boolean): string {
  const count = p.total === null ? '' : withDone ? ` ${p.done}/${p.total} images` : ` (${p.total} images)`;
  return `${p.name}: ${p.task}${count}`;
}

export interface TrainCallbacks {
  onStart?(info: TrainStartInfo): void | Promise<void>;
  onStep?(metric: StepMetric): void | Promise<void>;
  onEval?(metric: EvalMetric): void | Promise<void>;
  /** Reading the data set and each evaluation, as they go; null when one ends (called synchronously: keep it cheap). */
  onPhase?: PhaseListener;
  onCheckpoint?(checkpoint: CheckpointInfo): void | Promise<void>;
  onWarning?(warning: TrainWarning): void | Promise<void>;
}

export interface TrainOptions {
  /** The resolved config (every default filled). */
  config: TrainingConfig;
  /** The run's own folder; checkpoints go to `<workDir>/checkpoints/`. */
  workDir: string;
  /** Root that `imagefolder` dataset paths resolve under. */
  dataRoot: string;
  /** Resume this run from its own checkpoint directory (weights, optimizer, EMA, RNG, data order). */
  resumeFrom?: string | null;
  /** Start from an earlier run's checkpoint directory: weights (and BN stats, EMA ranges) only. */
  initFrom?: string | null;
  callbacks?: TrainCallbacks;
  /**
   * Called with the data set's class count once it is loaded, before the model is built: throwing
   * refuses the run (a worker's admission check; the API may not have seen an image folder).
   */
  admit?: (classes: number) => void;
  logger?: Logger;
  /**
   * When aborted, the engine finishes the current step, writes a checkpoint and returns 'stopped';
   * aborted while it reads an image folder, before any step, runTraining rejects with an AbortError.
   */
  signal?: AbortSignal;
  /**
   * Render training batches in a separate thread, overlapping the step (default true). False
   * renders them on the training thread between steps (the synchronous pipeline).
   */
  dataThread?: boolean;
  /**
   * Threads each training step is split over (data-parallel, batch norm over the whole batch;
   * default 1). Used on the wasm and cpu backends with the fused QAT ops; capped at the batch size,
   * and only where each thread's share of a step is large enough to pay (MIN_SPLIT_MACS in
   * train.ts) unless `forceStepSplit`.
   */
  stepThreads?: number;
  /** Split steps even where MIN_SPLIT_MACS says it does not pay (tests, measurements). */
  forceStepSplit?: boolean;
  /**
   * Validation images (spread over the split: spreadIndices) whose logits the result carries from
   * the final evaluation, so the export verifies against them instead of running the model again
   * (default 0: none).
   */
  keepEvalLogits?: number;
  /**
   * The engine that scores an evaluation's int8 top-1, built from the model's int8 graph at each
   * evaluation: the queue layer passes ONNX Runtime on the file the export will write
   * (src/export/onnx-scorer.ts), about 8x faster per image than the int8 graph in tfjs. Absent: the
   * tfjs int8 graph scores. The final evaluation's kept rows (keepEvalLogits) are the tfjs int8
   * graph's either way: the export checks the file against them.
   */
  int8Scorer?: (graph: QuantGraph) => Promise<Scorer>;
  /**
   * The engine that scores an evaluation's float top-1 (before quantization starts, the only one),
   * built from the model's float graph (BN folded) at each evaluation: the queue layer passes ONNX
   * Runtime, 1.8-2.4x faster per image on one thread than the model's forward pass in tfjs
   * (src/export/onnx-scorer.ts). Absent: the tfjs forward pass scores.
   */
  floatScorer?: (graph: FloatGraph) => Promise<Scorer>;
}

/** The model in another engine, for an evaluation (TrainOptions.int8Scorer, floatScorer). */
export interface Scorer {
  /** Logits (n rows) of n NHWC images at the model's input size. */
  logits(x: Float32Array, n: number): Promise<Float32Array>;
  release(): Promise<void>;
  /**
   * Names the exact model the scorer runs (onnx-scorer.ts: the sha256 of the ONNX file). An int8
   * scorer with one leaves the final evaluation's logits on every row (EvalLogits.scored), which
   * the export uses as its own file's evaluation when its file is that model.
   */
  fingerprint?: string;
}

/** The most logits EvalLogits.scored holds (validation rows x classes): 16 MB of floats. */
export const SCORED_LOGITS_MAX = 4_000_000;

/**
 * An evaluation's logits on chosen validation rows: what the trained model computed, which the
 * export's ONNX file must reproduce (ExportJobOptions.evalLogits).
 */
export interface EvalLogits {
  /** The step of the weights that computed them. */
  step: number;
  /** Rows of the validation split, ascending. */
  rows: number[];
  classes: number;
  /** The int8 graph's logits, rows.length x classes (absent when the evaluation ran only the float model). */
  int8?: Float32Array;
  /** The float model's (absent when the evaluation did not run it: quantization was never delayed). */
  float?: Float32Array;
  /**
   * The int8 scorer's logits on every validation row, in split order, and the scorer's
   * fingerprint (Scorer.fingerprint). Absent when no such scorer ran or the split's logits would
   * exceed SCORED_LOGITS_MAX.
   */
  scored?: { fingerprint: string; logits: Float32Array };
}

export interface TrainResult {
  status: 'completed' | 'stopped';
  backend: BackendName;
  step: number;
  epoch: number;
  /** The newest checkpoint directory (the final weights when status is 'completed'). */
  checkpoint: string;
  /** The final evaluation (absent when stopped before any). */
  eval?: EvalMetric;
  /** With TrainOptions.keepEvalLogits: the final evaluation's logits on those rows. */
  evalLogits?: EvalLogits;
  /**
   * The data set the run trained and evaluated on, its decoded images still cached (within its
   * byte budget): an export right after verifies on it instead of decoding the validation split
   * again. Not data to send: a thread posting the result leaves it out.
   */
  dataset: Dataset;
  classes: string[];
  warnings: number;
}

/** What one optimizer step trains on: NHWC normalized images [n, size, size, 3], their labels, and the step's settings. */
export interface StepBatch {
  x: Float32Array;
  y: Int32Array;
  n: number;
  size: number;
  mode: ForwardMode;
  lr: number;
  labelSmoothing: number;
}
