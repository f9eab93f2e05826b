// The training engine: runTraining(opts) trains MobileNetV2 with quantization-aware training and
// reports through the callbacks of train-api.ts. Its named steps, in run order (as torchvision's
// reference separates train_one_epoch and evaluate):
//   setupRun (backend, data, schedule, model) -> restoreStart (fresh | resume | init)
//   -> trainOneEpoch (trainStep per batch) -> evaluateRun -> saveRun -> ... -> final eval + checkpoint.
import path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { tf } from './tf.js';
import { selectBackend } from './backend.js';
import { buildArch, forwardMacsPerImage, MobileNetV2, type ForwardMode } from './mobilenet-v2.js';
import type { ArchSpec } from './mobilenet-arch.js';
import { MomentumSgd, type SgdParam } from './optimizer.js';
import { smoothedCrossEntropy } from './loss.js';
import { bnMomentumAt } from './conv-bn-fold.js';
import { lrAt, type Schedule } from './schedule.js';
import { evalBatchSize, evaluate, spreadIndices, type TopK } from './evaluate.js';
import { DivergenceGuard } from './divergence.js';
import { StepRate } from './step-rate.js';
import { isWasmAbort, WasmAbortedError, type WasmPhase } from './wasm-abort.js';
import { CheckpointError, loadCheckpoint, saveCheckpoint, type LoadedCheckpoint } from './checkpoint.js';
import { restoreState, snapshotState } from './model-state.js';
import {
  hashSeed,
  loadDataset,
  NORMALIZATION,
  nfc,
  openTrainBatches,
  openTrainSources,
  rowsOf,
  stepsPerEpoch,
  type Dataset,
  type EpochBatch,
  type EpochIterator,
  type EpochSourceBatch,
  type Split,
  type TrainBatches,
} from '../data/index.js';
import { peakLearningRate, quantDelaySteps, type TrainingConfig } from '../config/training-config.js';
import {
  SCORED_LOGITS_MAX,
  type BackendName,
  type EvalLogits,
  type EvalMetric,
  type PhaseListener,
  type Scorer,
  type StepBatch,
  type TrainOptions,
  type TrainResult,
  type TrainWarning,
} from './train-api.js';
import { silentLogger, type Logger } from '../logger.js';
import { qatOpsName } from './qat-ops.js';
import { DataParallelStep } from './data-parallel/data-parallel-step.js';
import { rowLogits, type EvalForward } from './eval-forward.js';
import { toQuantGraph } from './to-quant-graph.js';
import { toFloatGraph } from './to-float-graph.js';

export class TrainingError extends Error {
  constructor(
    readonly code: 'TRAINING_DIVERGED' | 'DATASET_TOO_SMALL',
    message: string,
  ) {
    super(message);
    this.name = 'TrainingError';
  }
}

/** Salt for per-step dropout seeds. */
const DROPOUT_STREAM = 0xd20;

/** Forward mode of the training step with 0-based index `step` (fake quant from `delaySteps` on). */
export function trainMode(cfg: TrainingConfig, step: number, delaySteps: number): ForwardMode {
  const q = cfg.quantization;
  return {
    training: true,
    fakeQuant: q.enabled && step >= delaySteps,
    bnBatchStats: q.freezeBnAfterSteps === null || step < q.freezeBnAfterSteps,
    // Ranges are tracked from the first step, also while quantization is delayed or disabled, so
    // they are warm when fake quant starts and any checkpoint can be exported.
    observeRanges: true,
    dropoutSeed: hashSeed(cfg.training.seed, DROPOUT_STREAM, step),
    bnMomentum: bnMomentumAt(step),
  };
}

export function evalMode(fakeQuant: boolean): ForwardMode {
  return { training: false, fakeQuant, bnBatchStats: false, observeRanges: false };
}

/** Steps per epoch for a split of n samples: full batches only, but at least one step. */
export function trainStepsPerEpoch(n: number, batchSize: number): { steps: number; dropLast: boolean } {
  if (n === 0) throw new TrainingError('DATASET_TOO_SMALL', 'the training split is empty');
  return n >= batchSize ? { steps: stepsPerEpoch(n, batchSize, true), dropLast: true } : { steps: 1, dropLast: false };
}

/** The model and data settings a resumed run must share with its checkpoint. */
function assertResumable(cfg: TrainingConfig, ck: LoadedCheckpoint, classes: string[]): void {
  const a = ck.manifest.config;
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  const diffs: string[] = [];
  if (!same(a.model, cfg.model)) diffs.push('model');
  if (!same(a.dataset, cfg.dataset)) diffs.push('dataset');
  if (a.training.batchSize !== cfg.training.batchSize) diffs.push('training.batchSize');
  if (a.training.seed !== cfg.training.seed) diffs.push('training.seed');
  // Class names are composed (NFC) since the forty-first session; an older checkpoint's may not be.
  if (!same(ck.manifest.classes.map(nfc), classes)) diffs.push('classes');
  if (diffs.length) {
    throw new CheckpointError('CHECKPOINT_MISMATCH', `cannot resume from ${ck.dir}: ${diffs.join(', ')} differ from this run`);
  }
}

/** Everything one run carries between its steps: what setupRun built and where the run stands. */
interface Run {
  opts: TrainOptions;
  cfg: TrainingConfig;
  log: Logger;
  cb: NonNullable<TrainOptions['callbacks']>;
  warnings: number;
  backend: BackendName;
  ds: Dataset;
  /** Steps per epoch, and whether the last partial batch is dropped. */
  spe: number;
  dropLast: boolean;
  totalSteps: number;
  schedule: Schedule;
  /** Float steps before fake quantization (quantization.delaySteps, or delayFraction of totalSteps). */
  delaySteps: number;
  guard: DivergenceGuard;
  arch: ArchSpec;
  model: MobileNetV2;
  opt: MomentumSgd;
  sgdParams: SgdParam[];
  byVarName: Map<string, string>;
  checkpointsDir: string;
  resume: LoadedCheckpoint | null;
  init: LoadedCheckpoint | null;
  step: number;
  lastEval?: EvalMetric;
  /** The last evaluation's logits on TrainOptions.keepEvalLogits rows. */
  lastEvalLogits?: EvalLogits;
  lastSavedStep: number;
  /** performance.now() at the last checkpoint, or when training started (checkpointEveryMinutes). */
  lastSavedAt: number;
  lastCheckpoint: string;
  /** performance.now() when the next step's images-per-second count starts. */
  lastTime: number;
  /** The images/s reported with each step (a window of recent steps). */
  stepRate: StepRate;
  /**
   * Training batches (closed when the run ends), prepared in a separate thread while a step trains:
   * rendered pixels, or for a split step source rows its threads render (DataParallelStep.stepSources).
   */
  batches: TrainBatches<EpochBatch> | TrainBatches<EpochSourceBatch>;
  /** The step split over threads (TrainOptions.stepThreads), or null: one thread. */
  parallel: DataParallelStep | null;
}

const epochOf = (run: Run, s: number) => (s === 0 ? 0 : Math.ceil(s / run.spe));

/** Backend, data, schedule, checkpoints to start from, model and optimizer. */
async function setupRun(opts: TrainOptions): Promise<Run> {
  const cfg = opts.config;
  const T = cfg.training;
  const log = opts.logger ?? silentLogger;
  const cb = opts.callbacks ?? {};
  const backend: BackendName = await selectBackend({ logger: log });
  // `run` does not exist yet while the dataset loads; its warnings are counted here and copied.
  let early = 0;
  let run: Run | undefined;
  const warn = (w: TrainWarning) => {
    if (run) run.warnings++;
    else early++;
    log.warn({ code: w.code }, w.message);
    void Promise.resolve(cb.onWarning?.(w)).catch(() => {});
  };
  const resume = opts.resumeFrom ? await loadCheckpoint(opts.resumeFrom) : null;
  const reading = readingPhase(cb.onPhase);
  const ds: Dataset = await loadDataset(cfg.dataset, {
    dataRoot: opts.dataRoot,
    inputSize: cfg.model.inputSize,
    onWarning: warn,
    onProgress: reading.onProgress,
    // A cancel while a large folder is read stops it (an AbortError): 1.28M headers take minutes.
    signal: opts.signal,
    // A resumed run's classifier has the classes it started with, whatever the folder holds now.
    classes: resume?.manifest.classes,
  }).finally(reading.end);
  log.info(`dataset: ${ds.description}`);
  opts.admit?.(ds.classes.length);
  const { steps: spe, dropLast } = trainStepsPerEpoch(ds.train.length, T.batchSize);
  const scheduleSteps = T.epochs * spe;
  const totalSteps = Math.min(scheduleSteps, T.maxSteps ?? Infinity);
  const schedule: Schedule = { peak: peakLearningRate(T), warmupSteps: Math.round(T.warmupEpochs * spe), totalSteps: scheduleSteps };
  // The delay counts the steps this run will take (maxSteps included), so a capped run still ends in QAT.
  const delaySteps = quantDelaySteps(cfg.quantization, totalSteps);

  const init = !resume && opts.initFrom ? await loadCheckpoint(opts.initFrom) : null;
  if (resume) assertResumable(cfg, resume, ds.classes);

  const arch = buildArch({ ...cfg.model, numClasses: ds.classes.length });
  const model = new MobileNetV2(arch, cfg.quantization.emaDecay, T.seed, cfg.quantization.weightBits);
  const opt = new MomentumSgd({ momentum: T.momentum, weightDecay: T.weightDecay });
  const sgdParams: SgdParam[] = [...model.params.values()]
    .filter((p) => p.trainable)
    .map((p) => ({ name: p.name, variable: p.variable, decay: p.role === 'weight' }));
  const byVarName = new Map([...model.params.values()].map((p) => [p.variable.name, p.name]));
  const world = stepWorld(opts.stepThreads ?? 1, backend, Math.min(T.batchSize, ds.train.length), opts.forceStepSplit ? Infinity : forwardMacsPerImage(arch));
  // Decoding (and, for a step on one thread, augmentation and the pixel pass) of the next batches
  // run in their own thread while a step trains; a split step's threads render their own rows.
  const batchOptions = { batchSize: T.batchSize, seed: T.seed, shuffle: true, augment: T.augment, dropLast };
  const batchThread = { thread: opts.dataThread, onWarning: warn };
  const batches = world > 1 ? openTrainSources(ds, batchOptions, batchThread) : openTrainBatches(ds, batchOptions, batchThread);
  run = {
    opts,
    cfg,
    log,
    cb,
    warnings: early,
    backend,
    ds,
    spe,
    dropLast,
    totalSteps,
    schedule,
    delaySteps,
    arch,
    guard: new DivergenceGuard(T.batchSize, ds.classes.length, schedule.peak),
    model,
    opt,
    sgdParams,
    byVarName,
    checkpointsDir: path.join(opts.workDir, 'checkpoints'),
    resume,
    init,
    step: 0,
    lastSavedStep: -1,
    lastSavedAt: performance.now(),
    lastCheckpoint: '',
    lastTime: performance.now(),
    stepRate: new StepRate(),
    batches,
    parallel: null,
  };
  log.info(
    `training batches ${run.batches.where === 'thread' ? 'prepared in a separate thread' : 'prepared inline'}` +
      (world > 1 ? ', rendered by the training threads' : ''),
  );
  if (world > 1) {
    try {
      run.parallel = await DataParallelStep.open({ world, backend, model, opt, params: sgdParams, emaDecay: cfg.quantization.emaDecay, seed: T.seed });
    } catch (err) {
      await run.batches.close();
      opt.dispose();
      model.dispose();
      throw err;
    }
  }
  log.info(`training steps split over ${world} thread${world > 1 ? 's' : ''}`);
  return run;
}

/**
 * Forward multiply-adds each thread's share of a step must reach before a step is split. Every
 * thread pays the whole step's per-op overhead (tfjs dispatch, ~1,500 ops) and the step adds ~150
 * synchronisation points, so a split only pays where arithmetic dominates. Measured with
 * bench/train.ts (QAT img/s, 1 thread -> 2, cores to themselves): 1.0@224 bs8 (1,198M per
 * thread) 4.7 -> 7.2; 0.35@32 bs16 (9.5M) 316 -> 260.
 */
export const MIN_SPLIT_MACS = 200e6;

/**
 * Threads a step is split over: the ones asked for, where the backend's fused batch norm can share
 * statistics across threads (wasm, cpu), no more than the rows of a batch, and only where each
 * thread's share of the arithmetic outweighs the split's overhead (MIN_SPLIT_MACS).
 */
export function stepWorld(threads: number, backend: BackendName, rowsPerBatch: number, macsPerImage: number): number {
  if (backend === 'tensorflow' || qatOpsName() === 'stock') return 1;
  let world = Math.max(1, Math.min(threads, rowsPerBatch));
  while (world > 1 && (macsPerImage * rowsPerBatch) / world < MIN_SPLIT_MACS) world--;
  return world;
}

/** Weights (and, when resuming, optimizer state and step) from the checkpoint the run starts at. */
function restoreStart(run: Run): void {
  const { model, opt, resume, init, arch, log } = run;
  if (resume) {
    restoreState(model, opt, resume.tensors, true);
    model.ranges.load(resume.manifest.ranges);
    run.step = resume.manifest.step;
    log.info(`resumed from ${resume.dir} at step ${run.step}`);
  } else if (init) {
    const { skipped } = restoreState(model, null, init.tensors, false);
    const notHead = skipped.filter((n) => !n.startsWith(`${arch.dense.name}/`));
    if (notHead.length) {
      throw new CheckpointError('CHECKPOINT_MISMATCH', `init checkpoint ${init.dir} does not fit this model (${notHead.slice(0, 3).join(', ')}...)`);
    }
    const ranges = { ...init.manifest.ranges };
    // A re-initialised classifier starts its logit range afresh.
    if (skipped.length) delete ranges.logits;
    model.ranges.load(ranges);
    log.info(`initialised from ${init.dir}${skipped.length ? ` (new classifier: ${skipped.join(', ')})` : ''}`);
  }
}

/** A wasm abort inside a phase, as WASM_ABORTED with the sizes that decide its memory. */
function wasmAbort(run: Run, phase: WasmPhase, err: unknown, batchSize: number): unknown {
  if (!isWasmAbort(err)) return err;
  return new WasmAbortedError(
    phase,
    { widthMultiplier: run.cfg.model.widthMultiplier, inputSize: run.arch.inputSize, batchSize, valImages: run.ds.val.length },
    err,
  );
}

/**
 * The steps from run.step to the end of its epoch (or to totalSteps). Returns 'stopped' when the
 * signal aborted (after the current step), else 'epoch-end'.
 */
async function trainOneEpoch(run: Run): Promise<'stopped' | 'epoch-end'> {
  const { spe } = run;
  const epochIndex = Math.floor(run.step / spe);
  const batches: EpochIterator<EpochBatch | EpochSourceBatch> = run.batches.epoch(epochIndex, run.step % spe)[Symbol.asyncIterator]();
  try {
    for (let r = await batches.next(); !r.done; r = await batches.next()) {
      if ((await trainOnBatch(run, r.value, batches)) === 'stopped') return 'stopped';
      if (run.step >= run.totalSteps || run.step % spe === 0) break;
      // The next rate counts its data wait and its step, not this step's callbacks and saves.
      run.lastTime = performance.now();
    }
  } finally {
    await batches.return?.();
  }
  return 'epoch-end';
}

/** One step on batch `b` and what follows it (callbacks, checkpoint); 'stopped' when the signal aborted. */
async function trainOnBatch(run: Run, b: EpochBatch | EpochSourceBatch, batches: EpochIterator<EpochBatch | EpochSourceBatch>): Promise<'stopped' | 'next'> {
  const { cfg, model, opt, sgdParams, byVarName, spe, cb, opts } = run;
  const T = cfg.training;
  const size = run.arch.inputSize;
  const epochIndex = Math.floor(run.step / spe);
  const lr = lrAt(run.schedule, run.step);
  let loss: number;
  try {
    const step = { y: b.y, n: b.n, size, mode: trainMode(cfg, run.step, run.delaySteps), lr, labelSmoothing: T.labelSmoothing };
    if ('rows' in b) {
      // The threads render their rows of the next batch during this step, if it has arrived.
      const next = run.step + 1 < run.totalSteps ? batches.peek() : null;
      loss = run.parallel!.stepSources({ ...step, rows: b.rows }, next && 'rows' in next ? next.rows : null);
    } else {
      loss = run.parallel ? run.parallel.step({ ...step, x: b.x }) : trainStep({ model, opt, params: sgdParams, byVarName, ...step, x: b.x });
    }
  } catch (err) {
    throw wasmAbort(run, 'train', err, b.n);
  }
  const diverged = run.guard.observe(loss, run.step + 1);
  if (diverged) throw new TrainingError('TRAINING_DIVERGED', diverged);
  run.step++;
  const now = performance.now();
  const ips = run.stepRate.add(b.n, now - run.lastTime);
  run.lastTime = now;
  await cb.onStep?.({ step: run.step, epoch: epochIndex + 1, loss, learningRate: lr, imagesPerSecond: ips });
  // Let the worker's heartbeats and cancel checks run between steps.
  await yieldToLoop();
  if (opts.signal?.aborted) return 'stopped';
  const everyMs = (T.checkpointEveryMinutes ?? 0) * 60_000;
  if ((T.checkpointEverySteps && run.step % T.checkpointEverySteps === 0) || (everyMs && performance.now() - run.lastSavedAt >= everyMs)) await saveRun(run);
  return 'next';
}

/**
 * Validation accuracy at run.step: the int8 model's (evaluateInt8: the file the export will write,
 * or the int8 graph computed in integers exactly as that file does) once quantization is on and
 * every range is known, else the float model's; the float top-1 as well while quantization was
 * delayed. Streams the split in batches sized by pixels. Returns null when the signal aborted
 * midway.
 */
async function evaluateRun(run: Run): Promise<EvalMetric | null> {
  const { cfg, model, ds, log, cb } = run;
  const q = cfg.quantization;
  const batchSize = evalBatchSize(run.arch.inputSize);
  try {
    const haveRanges = model.quantPoints().every((n) => model.ranges.get(n));
    const quantEval = q.enabled && haveRanges;
    // Rows whose logits the export will verify its ONNX file against (TrainOptions.keepEvalLogits).
    const keepRows = run.opts.keepEvalLogits ? spreadIndices(ds.val.length, run.opts.keepEvalLogits) : undefined;
    const evalOpts = { batchSize, seed: cfg.training.seed, signal: run.opts.signal, keepRows };
    const main: ScoredTopK | null = quantEval ? await evaluateInt8(run, evalOpts) : await evaluateFloat(run, evalOpts);
    if (!main) return null;
    const metric: EvalMetric = { step: run.step, epoch: epochOf(run, run.step), top1: main.top1, top5: main.top5 };
    const logits: EvalLogits | undefined = keepRows && { step: run.step, rows: keepRows, classes: model.arch.numClasses };
    if (logits) logits[quantEval ? 'int8' : 'float'] = main.kept;
    if (logits && main.scored) logits.scored = main.scored;
    if (!quantEval) metric.floatTop1 = main.top1;
    else if (run.delaySteps > 0) {
      const fl = await evaluateFloat(run, evalOpts);
      if (!fl) return null;
      metric.floatTop1 = fl.top1;
      if (logits) logits.float = fl.kept;
    }
    run.lastEvalLogits = logits;
    run.lastEval = metric;
    log.info(
      `eval step ${run.step}: top1 ${(metric.top1 * 100).toFixed(2)}% top5 ${(metric.top5 * 100).toFixed(2)}%` +
        (metric.floatTop1 !== undefined ? ` float top1 ${(metric.floatTop1 * 100).toFixed(2)}%` : ''),
    );
    await cb.onEval?.(metric);
    return metric;
  } catch (err) {
    throw wasmAbort(run, 'evaluate', err, batchSize);
  } finally {
    cb.onPhase?.(null);
  }
}

/**
 * The validation split (or `split`, some of its rows) through `forward`: the int8 graph (computed
 * in integers as the export will) or the model in a mode. A split step's threads share the work,
 * each its rows of every batch: a 224 px job's 2,000 validation images took 129 s on one thread.
 */
async function evaluateOn(run: Run, forward: EvalForward, opts: EvalOpts, split: Split = run.ds.val): Promise<TopK | null> {
  const { model } = run;
  const rows = rowLogits(model, forward);
  const dp = run.parallel;
  try {
    dp?.evalBegin(forward);
    return await evaluate(model, split, {
      ...opts,
      logits: dp ? (x, n) => dp.forwardRows(x, n, run.arch.inputSize, model.arch.numClasses, rows.logits) : rows.logits,
    });
  } finally {
    dp?.evalEnd();
    rows.dispose();
  }
}

/** An evaluation's figures, and its int8 scorer's logits on every row where the export will read them. */
type ScoredTopK = TopK & { scored?: EvalLogits['scored'] };

interface EvalOpts {
  batchSize: number;
  seed: number;
  signal?: AbortSignal;
  keepRows?: number[];
  onBatch?: (done: number, total: number) => void;
}

/** How often an image folder's scan reports: it reads thousands of headers a second. */
const READING_REPORT_MS = 250;

/**
 * The `preparing` phase of reading an image folder's headers: reported at most every
 * READING_REPORT_MS and at the last header; ended if it was reported.
 */
function readingPhase(onPhase: PhaseListener | undefined): { onProgress?: (done: number, total: number) => void; end: () => void } {
  if (!onPhase) return { end: () => {} };
  let last = -Infinity;
  return {
    onProgress: (done, total) => {
      const now = performance.now();
      if (done < total && now - last < READING_REPORT_MS) return;
      last = now;
      onPhase({ name: 'preparing', task: 'reading the image folder', done, total });
    },
    end: () => {
      if (last > -Infinity) onPhase(null);
    },
  };
}

/** Reports `task` begun (0 of `total` images) as the run's `evaluating` phase; the options returned report each batch. */
function beginTask(run: Run, opts: EvalOpts, task: string, total: number): EvalOpts {
  const { onPhase } = run.cb;
  if (!onPhase) return opts;
  onPhase({ name: 'evaluating', task, done: 0, total });
  return { ...opts, onBatch: (done, all) => onPhase({ name: 'evaluating', task, done, total: all }) };
}

/**
 * The int8 top-1 at run.step: scored by TrainOptions.int8Scorer when there is one (ONNX Runtime on
 * the file the export will write; on this thread, the step's other threads idle), else by the tfjs
 * int8 graph. The final evaluation's kept rows are the tfjs int8 graph's on those rows only: what
 * the export checks its file against; with a fingerprinted scorer it also returns the scorer's
 * logits on every row (`scored`), the export's evaluation of that file. Earlier evaluations keep
 * none (no export reads them).
 */
async function evaluateInt8(run: Run, opts: EvalOpts): Promise<ScoredTopK | null> {
  const forward: EvalForward = { kind: 'int8', classes: run.ds.classes };
  // Said before the scorer starts: building its session takes seconds at 224 px.
  const scoring = beginTask(run, opts, 'int8 top-1 on the validation split', run.ds.val.length);
  const scorer = await startScorer(run, 'int8');
  if (!scorer) return evaluateOn(run, forward, scoring);
  const keep = opts.keepRows;
  const final = keep !== undefined && run.step >= run.totalSteps;
  const { length } = run.ds.val;
  // Every row's logits, for the export's evaluation of the same file (EvalLogits.scored).
  const keepAll = final && scorer.fingerprint && length * run.model.arch.numClasses <= SCORED_LOGITS_MAX;
  const top = await scoreSplit(run, scorer, { ...scoring, keepRows: keepAll ? Array.from({ length }, (_, i) => i) : undefined });
  if (!top || !final) return top;
  // The tfjs int8 graph on the images the export verifies its file on: at 224 px, 1,000 images take
  // longer than the whole split on ONNX Runtime.
  const verifying = beginTask(run, { ...opts, keepRows: keep.map((_, i) => i) }, 'int8 logits of the images the export verifies', keep.length);
  const own = await evaluateOn(run, forward, verifying, rowsOf(run.ds.val, keep));
  const scored = keepAll && top.kept ? { fingerprint: scorer.fingerprint!, logits: top.kept } : undefined;
  return own && { ...top, kept: own.kept, scored };
}

/**
 * The float top-1 at run.step: scored by TrainOptions.floatScorer when there is one (ONNX Runtime on
 * the float network, BN folded: the model's logits up to float rounding), else by the model's
 * forward pass, split over the step's threads.
 */
async function evaluateFloat(run: Run, opts: EvalOpts): Promise<TopK | null> {
  const scoring = beginTask(run, opts, 'float top-1 on the validation split', run.ds.val.length);
  const scorer = await startScorer(run, 'float');
  if (!scorer) return evaluateOn(run, { kind: 'model', mode: evalMode(false) }, scoring);
  return scoreSplit(run, scorer, scoring);
}

/** The validation split scored by `scorer`, which is released after. */
async function scoreSplit(run: Run, scorer: Scorer, opts: EvalOpts): Promise<TopK | null> {
  try {
    return await evaluate(run.model, run.ds.val, { ...opts, logits: (x, n) => scorer.logits(x, n) });
  } finally {
    await scorer.release();
  }
}

/** TrainOptions.int8Scorer or floatScorer on the model's graph; null without one, or (warned) if it cannot start. */
async function startScorer(run: Run, kind: 'int8' | 'float'): Promise<Scorer | null> {
  const { int8Scorer, floatScorer } = run.opts;
  try {
    if (kind === 'int8') return int8Scorer ? await int8Scorer(toQuantGraph(run.model, run.ds.classes, NORMALIZATION)) : null;
    return floatScorer ? await floatScorer(toFloatGraph(run.model)) : null;
  } catch (err) {
    const instead = kind === 'int8' ? 'the tfjs int8 graph' : "the model's forward pass";
    run.log.warn({ err }, `${kind} scorer unavailable, ${instead} scores instead: ${(err as Error).message.split('\n')[0]}`);
    return null;
  }
}

/** A checkpoint at run.step (once per step), reported through onCheckpoint. */
async function saveRun(run: Run): Promise<void> {
  if (run.lastSavedStep === run.step) return;
  const { step, spe, cfg } = run;
  const T = cfg.training;
  run.lastCheckpoint = await saveCheckpoint(
    run.checkpointsDir,
    {
      step,
      epoch: epochOf(run, step),
      stepsPerEpoch: spe,
      backend: run.backend,
      config: cfg,
      classes: run.ds.classes,
      inputSize: run.arch.inputSize,
      normalization: { mean: [...NORMALIZATION.mean], std: [...NORMALIZATION.std] },
      ranges: run.model.ranges.toJSON(),
      data: { seed: T.seed, epochIndex: Math.floor(step / spe), stepInEpoch: step % spe },
    },
    await snapshotState(run.model, run.opt),
    T.keepCheckpoints,
  );
  run.lastSavedStep = step;
  run.lastSavedAt = performance.now();
  await run.cb.onCheckpoint?.({ path: run.lastCheckpoint, step, epoch: epochOf(run, step) });
}

function result(run: Run, status: TrainResult['status']): TrainResult {
  return {
    status,
    backend: run.backend,
    step: run.step,
    epoch: epochOf(run, run.step),
    checkpoint: run.lastCheckpoint,
    eval: run.lastEval,
    evalLogits: run.lastEvalLogits,
    dataset: run.ds,
    classes: run.ds.classes,
    warnings: run.warnings,
  };
}

/** Whether the epoch that just ended is scored: every `evalEveryEpochs`-th, and the last step always. */
function evaluationDue(run: Run): boolean {
  return run.step >= run.totalSteps || (run.step / run.spe) % run.cfg.training.evalEveryEpochs === 0;
}

/** setupRun -> restoreStart -> (trainOneEpoch -> evaluateRun -> saveRun) per epoch -> final eval and checkpoint. */
export async function runTraining(opts: TrainOptions): Promise<TrainResult> {
  const run = await setupRun(opts);
  const stopped = async (): Promise<TrainResult> => {
    await saveRun(run);
    run.log.info(`stopped at step ${run.step}; checkpoint ${run.lastCheckpoint}`);
    return result(run, 'stopped');
  };
  try {
    restoreStart(run);
    await run.parallel?.sync(run.model, run.opt);
    await run.cb.onStart?.({
      backend: run.backend,
      totalSteps: run.totalSteps,
      stepsPerEpoch: run.spe,
      startStep: run.step,
      numTrain: run.ds.train.length,
      numVal: run.ds.val.length,
      classes: run.ds.classes,
      dataset: run.ds.description,
    });
    if (opts.signal?.aborted) return await stopped();

    run.lastTime = performance.now();
    // Minutes of training count, not the data set's loading before it.
    run.lastSavedAt = run.lastTime;
    while (run.step < run.totalSteps) {
      if ((await trainOneEpoch(run)) === 'stopped') return await stopped();
      if (run.step % run.spe === 0 || run.step >= run.totalSteps) {
        if (evaluationDue(run)) {
          const m = await evaluateRun(run);
          if (!m && opts.signal?.aborted) return await stopped();
        }
        await saveRun(run);
        run.lastTime = performance.now();
      }
    }
    if (!run.lastEval || run.lastEval.step !== run.step) await evaluateRun(run);
    await saveRun(run);
    return result(run, 'completed');
  } finally {
    await run.batches.close();
    await run.parallel?.close();
    run.opt.dispose();
    run.model.dispose();
  }
}

/** What one optimizer step needs: the batch, the model and the optimizer. */
export interface TrainStepInput extends StepBatch {
  model: MobileNetV2;
  opt: MomentumSgd;
  params: SgdParam[];
  /** tfjs variable name -> parameter name (the optimizer's slots are keyed by parameter name). */
  byVarName: Map<string, string>;
}

/** One optimizer step; returns the loss. Everything it allocates is freed before it returns. */
export function trainStep(s: TrainStepInput): number {
  const xs = tf.tensor4d(s.x, [s.n, s.size, s.size, 3]);
  const ys = tf.tensor1d(s.y, 'int32');
  try {
    const { value, grads } = tf.variableGrads(
      () => smoothedCrossEntropy(s.model.forward(xs, s.mode), ys, s.labelSmoothing),
      s.params.map((p) => p.variable),
    );
    const loss = value.dataSync()[0];
    value.dispose();
    const named = new Map<string, tf.Tensor>();
    for (const [vn, g] of Object.entries(grads)) named.set(s.byVarName.get(vn) ?? vn, g);
    if (Number.isFinite(loss)) s.opt.step(s.params, named, s.lr);
    for (const g of named.values()) g.dispose();
    return loss;
  } finally {
    xs.dispose();
    ys.dispose();
  }
}
