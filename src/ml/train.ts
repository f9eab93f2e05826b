// The training engine: runTraining(opts) trains MobileNetV2 with quantization-aware training and
// reports through the callbacks of train-api.ts. It reads in run order:
//   selectBackend -> loadData -> buildModel (fresh | resume | init) -> lrAt(step) -> train steps
//   -> evaluate at each epoch end -> saveCheckpoint -> ... -> final eval + checkpoint.
import path from 'node:path';
import { tf } from './tf.js';
import { selectBackend } from './backend.js';
import { buildArch, MobileNetV2, type ForwardMode } from './mobilenet-v2.js';
import { MomentumSgd, type SgdParam } from './optimizer.js';
import { smoothedCrossEntropy } from './loss.js';
import { bnMomentumAt } from './conv-bn-fold.js';
import { lrAt, type Schedule } from './schedule.js';
import { evaluate } from './evaluate.js';
import { StepRate } from './step-rate.js';
import { Int8GraphRunner } from './int8-graph-runner.js';
import { toQuantGraph } from './quant-export.js';
import { CheckpointError, loadCheckpoint, saveCheckpoint, type LoadedCheckpoint } from './checkpoint.js';
import { restoreState, snapshotState } from './model-state.js';
import { hashSeed, loadDataset, NORMALIZATION, openTrainBatches, stepsPerEpoch, type Dataset } from '../data/index.js';
import type { TrainingConfig } from '../jobs/training-config.js';
import type { BackendName, EvalMetric, TrainLogger, TrainOptions, TrainResult, TrainWarning } from './train-api.js';

export class TrainingError extends Error {
  constructor(
    readonly code: 'LOSS_NOT_FINITE' | 'DATASET_TOO_SMALL',
    message: string,
  ) {
    super(message);
    this.name = 'TrainingError';
  }
}

const silent: TrainLogger = { info() {}, warn() {} };
const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

/** Salt for per-step dropout seeds. */
const DROPOUT_STREAM = 0xd20;

/** Forward mode of the training step with 0-based index `step`. */
export function trainMode(cfg: TrainingConfig, step: number): ForwardMode {
  const q = cfg.quantization;
  return {
    training: true,
    fakeQuant: q.enabled && step >= q.delaySteps,
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
  if (!same(ck.manifest.classes, classes)) diffs.push('classes');
  if (diffs.length) {
    throw new CheckpointError('CHECKPOINT_MISMATCH', `cannot resume from ${ck.dir}: ${diffs.join(', ')} differ from this run`);
  }
}

export async function runTraining(opts: TrainOptions): Promise<TrainResult> {
  const cfg = opts.config;
  const T = cfg.training;
  const log = opts.logger ?? silent;
  const cb = opts.callbacks ?? {};
  let warnings = 0;
  const warn = (w: TrainWarning) => {
    warnings++;
    log.warn(w.message, { code: w.code });
    void Promise.resolve(cb.onWarning?.(w)).catch(() => {});
  };

  // --- setup ---------------------------------------------------------------------------------
  const backend: BackendName = await selectBackend({ logger: log });
  const ds: Dataset = await loadDataset(cfg.dataset, { dataRoot: opts.dataRoot, inputSize: cfg.model.inputSize, onWarning: warn });
  log.info(`dataset: ${ds.description}`);
  const { steps: spe, dropLast } = trainStepsPerEpoch(ds.train.length, T.batchSize);
  const scheduleSteps = T.epochs * spe;
  const totalSteps = Math.min(scheduleSteps, T.maxSteps ?? Infinity);
  const schedule: Schedule = { peak: T.learningRate, warmupSteps: Math.round(T.warmupEpochs * spe), totalSteps: scheduleSteps };

  const resume = opts.resumeFrom ? await loadCheckpoint(opts.resumeFrom) : null;
  const init = !resume && opts.initFrom ? await loadCheckpoint(opts.initFrom) : null;
  if (resume) assertResumable(cfg, resume, ds.classes);

  const arch = buildArch({ ...cfg.model, numClasses: ds.classes.length });
  const model = new MobileNetV2(arch, cfg.quantization.emaDecay, T.seed, cfg.quantization.weightBits);
  const opt = new MomentumSgd({ momentum: T.momentum, weightDecay: T.weightDecay });
  const sgdParams: SgdParam[] = [...model.params.values()]
    .filter((p) => p.trainable)
    .map((p) => ({ name: p.name, variable: p.variable, decay: p.role === 'weight' }));
  const byVarName = new Map([...model.params.values()].map((p) => [p.variable.name, p.name]));
  const checkpointsDir = path.join(opts.workDir, 'checkpoints');
  // Decoding and augmentation of the next batch run in their own thread while a step trains.
  const trainBatches = openTrainBatches(
    ds,
    { batchSize: T.batchSize, seed: T.seed, shuffle: true, augment: T.augment, dropLast },
    { thread: opts.dataThread, onWarning: warn },
  );
  log.info(`training batches rendered ${trainBatches.where === 'thread' ? 'in a separate thread' : 'inline'}`);

  try {
    let step = 0;
    if (resume) {
      restoreState(model, opt, resume.tensors, true);
      model.ranges.load(resume.manifest.ranges);
      step = resume.manifest.step;
      log.info(`resumed from ${resume.dir} at step ${step}`);
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

    const startStep = step;
    await cb.onStart?.({
      backend, totalSteps, stepsPerEpoch: spe, startStep,
      numTrain: ds.train.length, numVal: ds.val.length, classes: ds.classes,
    });

    let lastEval: EvalMetric | undefined;
    let lastSavedStep = -1;
    let lastCheckpoint = '';
    const epochOf = (s: number) => (s === 0 ? 0 : Math.ceil(s / spe));

    const save = async (): Promise<void> => {
      if (lastSavedStep === step) return;
      const epochIndex = Math.floor(step / spe);
      lastCheckpoint = await saveCheckpoint(
        checkpointsDir,
        {
          step, epoch: epochOf(step), stepsPerEpoch: spe, backend, config: cfg, classes: ds.classes,
          inputSize: arch.inputSize,
          normalization: { mean: [...NORMALIZATION.mean], std: [...NORMALIZATION.std] },
          ranges: model.ranges.toJSON(),
          data: { seed: T.seed, epochIndex, stepInEpoch: step % spe },
        },
        await snapshotState(model, opt),
        T.keepCheckpoints,
      );
      lastSavedStep = step;
      await cb.onCheckpoint?.({ path: lastCheckpoint, step, epoch: epochOf(step) });
    };

    const runEval = async (): Promise<EvalMetric | null> => {
      const q = cfg.quantization;
      const haveRanges = model.quantPoints().every((n) => model.ranges.get(n));
      const quantEval = q.enabled && haveRanges;
      const evalOpts = { batchSize: T.batchSize, seed: T.seed, signal: opts.signal };
      // The quantized accuracy is the int8 graph's, computed in integers exactly as the export will.
      const int8 = quantEval ? new Int8GraphRunner(toQuantGraph(model, ds.classes, NORMALIZATION)) : null;
      const main = await evaluate(model, ds.val, { ...evalOpts, mode: evalMode(quantEval), forward: int8 ? (x) => int8.run(x) : undefined }).finally(() => int8?.dispose());
      if (!main) return null;
      const metric: EvalMetric = { step, epoch: epochOf(step), top1: main.top1, top5: main.top5 };
      if (!quantEval) metric.floatTop1 = main.top1;
      else if (q.delaySteps > 0) {
        const fl = await evaluate(model, ds.val, { ...evalOpts, mode: evalMode(false) });
        if (!fl) return null;
        metric.floatTop1 = fl.top1;
      }
      lastEval = metric;
      log.info(`eval step ${step}: top1 ${(metric.top1 * 100).toFixed(2)}% top5 ${(metric.top5 * 100).toFixed(2)}%` +
        (metric.floatTop1 !== undefined ? ` float top1 ${(metric.floatTop1 * 100).toFixed(2)}%` : ''));
      await cb.onEval?.(metric);
      return metric;
    };

    const stopped = async (): Promise<TrainResult> => {
      await save();
      log.info(`stopped at step ${step}; checkpoint ${lastCheckpoint}`);
      return { status: 'stopped', backend, step, epoch: epochOf(step), checkpoint: lastCheckpoint, eval: lastEval, classes: ds.classes, warnings };
    };

    if (opts.signal?.aborted) return await stopped();

    // --- the loop ------------------------------------------------------------------------------
    const size = arch.inputSize;
    let lastTime = performance.now();
    const stepRate = new StepRate();
    while (step < totalSteps) {
      const epochIndex = Math.floor(step / spe);
      for await (const b of trainBatches.epoch(epochIndex, step % spe)) {
        const lr = lrAt(schedule, step);
        const mode = trainMode(cfg, step);
        const loss = trainStep(model, opt, sgdParams, byVarName, b.x, b.y, b.n, size, mode, lr, T.labelSmoothing);
        if (!Number.isFinite(loss)) {
          throw new TrainingError('LOSS_NOT_FINITE', `loss became ${loss} at step ${step + 1}; lower the learning rate`);
        }
        step++;
        const now = performance.now();
        const ips = stepRate.add(b.n, now - lastTime);
        lastTime = now;
        await cb.onStep?.({ step, epoch: epochIndex + 1, loss, learningRate: lr, imagesPerSecond: ips });
        // Let the worker's heartbeats and cancel checks run between steps.
        await yieldToLoop();
        if (opts.signal?.aborted) return await stopped();
        if (T.checkpointEverySteps && step % T.checkpointEverySteps === 0) await save();
        if (step >= totalSteps || step % spe === 0) break;
        // The next rate counts its data wait and its step, not this step's callbacks and saves.
        lastTime = performance.now();
      }
      if (step % spe === 0 || step >= totalSteps) {
        const m = await runEval();
        if (!m && opts.signal?.aborted) return await stopped();
        await save();
        lastTime = performance.now();
      }
    }
    if (!lastEval || lastEval.step !== step) await runEval();
    await save();
    return { status: 'completed', backend, step, epoch: epochOf(step), checkpoint: lastCheckpoint, eval: lastEval, classes: ds.classes, warnings };
  } finally {
    await trainBatches.close();
    opt.dispose();
    model.dispose();
  }
}

/** One optimizer step; returns the loss. Everything it allocates is freed before it returns. */
export function trainStep(
  model: MobileNetV2,
  opt: MomentumSgd,
  params: SgdParam[],
  byVarName: Map<string, string>,
  x: Float32Array,
  y: Int32Array,
  n: number,
  size: number,
  mode: ForwardMode,
  lr: number,
  labelSmoothing: number,
): number {
  const xs = tf.tensor4d(x, [n, size, size, 3]);
  const ys = tf.tensor1d(y, 'int32');
  try {
    const { value, grads } = tf.variableGrads(
      () => smoothedCrossEntropy(model.forward(xs, mode), ys, labelSmoothing),
      params.map((p) => p.variable),
    );
    const loss = value.dataSync()[0]!;
    value.dispose();
    const named = new Map<string, tf.Tensor>();
    for (const [vn, g] of Object.entries(grads)) named.set(byVarName.get(vn) ?? vn, g);
    if (Number.isFinite(loss)) opt.step(params, named, lr);
    for (const g of named.values()) g.dispose();
    return loss;
  } finally {
    xs.dispose();
    ys.dispose();
  }
}
