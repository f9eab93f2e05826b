// `qatserve train --config cfg.json`: trains locally, without the server, with a one-line
// progress bar on stderr. Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a
// checkpoint and exits; `--resume <dir>` continues from it.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ZodError } from 'zod';
import type { Settings } from '../config/settings.js';
import { resolveTrainingConfig } from '../config/training-config.js';
import { DatasetError, DatasetPathError } from '../data/errors.js';
import { removeEmptyDirs } from '../file-system.js';
import { selectBackend } from '../ml/backend.js';
import { CheckpointError } from '../ml/checkpoint.js';
import { runTraining, TrainingError } from '../ml/train.js';
import { WasmAbortedError } from '../ml/wasm-abort.js';
import { onnxFloatScorer, onnxInt8Scorer } from '../export/onnx-scorer.js';
import { useTrainingHeapPolicy } from '../ml/training-heap.js';
import { phaseLine, type EvalMetric, type StepMetric, type TrainStartInfo } from '../ml/train-api.js';
import { logParts, type Logger } from '../logger.js';

export interface TrainCommandArgs {
  configPath: string;
  workDir?: string;
  dataRoot?: string;
  resume?: string;
}

export class TrainCommandError extends Error {
  constructor(
    readonly code: 'CONFIG_UNREADABLE' | 'CONFIG_INVALID' | 'WORK_DIR_UNUSABLE' | 'TRAINING_FAILED',
    message: string,
    /** TRAINING_FAILED: the run's own error (its `code` says which). */
    cause?: Error,
  ) {
    super(message, { cause });
    this.name = 'TrainCommandError';
  }
}

async function readConfig(file: string) {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new TrainCommandError('CONFIG_UNREADABLE', `cannot read ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new TrainCommandError('CONFIG_INVALID', `${file} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(e as Error).message}`);
  }
  try {
    return resolveTrainingConfig(raw);
  } catch (e) {
    if (e instanceof ZodError) {
      const lines = e.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new TrainCommandError('CONFIG_INVALID', `${file}:\n${lines.join('\n')}`);
    }
    throw e;
  }
}

/** The settings `qatserve train` uses (src/config/settings.ts; the CLI passes its own). */
export type TrainCommandSettings = Pick<Settings, 'dataRoot' | 'dataRootExplicit' | 'trainThreads' | 'engine'>;

function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** One progress line (no newline): bar, step, epoch, loss, lr, speed, ETA. Pure, for tests. */
export function progressLine(m: StepMetric, info: TrainStartInfo, epochs: number, rate: number, width = 24): string {
  const frac = info.totalSteps ? m.step / info.totalSteps : 1;
  const filled = Math.round(frac * width);
  const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? (frac >= 1 ? '=' : '>') : '') + ' '.repeat(width - filled);
  const eta = rate > 0 ? (info.totalSteps - m.step) / rate : NaN;
  return (
    `[${bar}] step ${m.step}/${info.totalSteps} epoch ${m.epoch}/${epochs} loss ${m.loss.toFixed(4)} ` +
    `lr ${m.learningRate.toPrecision(3)} ${m.imagesPerSecond.toFixed(1)} img/s ETA ${fmtDuration(eta)}`
  );
}

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;

function evalLine(e: EvalMetric): string {
  return (
    `eval step ${e.step} (epoch ${e.epoch}): top-1 ${pct(e.top1)} top-5 ${pct(e.top5)}` + (e.floatTop1 !== undefined ? ` float top-1 ${pct(e.floatTop1)}` : '')
  );
}

export async function runTrainCommand(args: TrainCommandArgs, settings: TrainCommandSettings): Promise<void> {
  useTrainingHeapPolicy();
  const config = await readConfig(args.configPath);
  const threads = settings.trainThreads;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const workDir = path.resolve(args.workDir ?? path.join('runs', `${config.name}-${stamp}`));
  // --data-root, else DATA_ROOT, else the working directory (not the service's <DATA_DIR>/datasets:
  // a local run reads the folders next to it).
  const dataRoot = path.resolve(args.dataRoot ?? (settings.dataRootExplicit ? settings.dataRoot : '.'));
  // Made first, so a directory it cannot create is said as such; `made` is the topmost one made.
  const made = await fs.mkdir(workDir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    throw new TrainCommandError('WORK_DIR_UNUSABLE', `cannot create the work directory ${workDir} (${e.code ?? e.message}): give --work-dir one you can write`);
  });
  const err = process.stderr;
  const tty = err.isTTY;
  let info: TrainStartInfo | null = null;
  let started = 0;
  let lineOpen = false;
  const clear = () => {
    if (lineOpen) err.write(tty ? '\r\x1b[2K' : '\n');
    lineOpen = false;
  };
  const say = (s: string) => {
    clear();
    err.write(`${s}\n`);
  };

  const ac = new AbortController();
  const onSignal = (sig: string) => {
    if (ac.signal.aborted) process.exit(130); // second Ctrl-C: leave now
    say(`${sig}: finishing the current step and writing a checkpoint (again to quit immediately)`);
    ac.abort();
  };
  const sigint = () => onSignal('SIGINT');
  const sigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);
  const sayLine = (prefix: string) => (a: object | string, b?: string) => say(prefix + logParts(a, b).msg);
  const logger: Logger = { info: sayLine(''), warn: sayLine('warning: '), error: sayLine('error: ') };
  try {
    // The engine as the settings say (QATSERVE_WASM_SIMD); runTraining keeps this choice.
    await selectBackend({ logger, wasmSimd: settings.engine.wasmSimd });
    const result = await runTraining({
      config,
      workDir,
      dataRoot,
      resumeFrom: args.resume ?? null,
      signal: ac.signal,
      // TRAIN_THREADS as for a worker: each step split over that many threads and, with 2 or
      // more, batches rendered in a thread of their own.
      dataThread: threads >= 2,
      stepThreads: threads,
      // Evaluations score on ONNX Runtime, as a worker's do.
      int8Scorer: (graph) => onnxInt8Scorer(graph, threads),
      floatScorer: (graph) => onnxFloatScorer(graph, threads),
      logger,
      callbacks: {
        onStart: (i) => {
          info = i;
          started = performance.now();
          say(`training ${config.name} on ${i.dataset}, ${i.totalSteps} steps (${i.stepsPerEpoch}/epoch) on ${i.backend}, work dir ${workDir}`);
        },
        onStep: (m) => {
          if (!info) return;
          const rate = (m.step - info.startStep) / ((performance.now() - started) / 1000);
          const line = progressLine(m, info, config.training.epochs, rate);
          if (tty) {
            err.write(`\r\x1b[2K${line}`);
            lineOpen = true;
          } else if (m.step % 50 === 0 || m.step === info.totalSteps) {
            err.write(`${line}\n`);
          }
        },
        // An evaluation of 2,000 images at 224 px takes a minute: the terminal follows its
        // batches, a log gets a line per task.
        onPhase: (p) => {
          if (!p) return;
          if (tty) {
            err.write(`\r\x1b[2K${phaseLine(p, true)}`);
            lineOpen = true;
          } else if (p.done === 0) say(phaseLine(p, false));
        },
        onEval: (e) => say(evalLine(e)),
        onCheckpoint: (c) => {
          if (!tty) say(`checkpoint ${c.path}`);
        },
      },
    });
    clear();
    if (result.status === 'stopped') {
      process.stdout.write(`stopped at step ${result.step}; resume with --resume ${result.checkpoint}\n`);
    } else {
      process.stdout.write(`done: ${result.step} steps on ${result.backend}; checkpoint ${result.checkpoint}\n`);
    }
    if (result.eval) process.stdout.write(`${evalLine(result.eval)}\n`);
    if (result.warnings) process.stdout.write(`${result.warnings} warning(s)\n`);
  } catch (e) {
    // A run refused before it wrote anything leaves no empty runs/<name>-<time> behind.
    if (made) await removeEmptyDirs(workDir, (d) => d === made || d.startsWith(made + path.sep));
    // What the run says of its input (a folder, a checkpoint, a data set too small, a divergence,
    // the wasm heap) is the whole story: said alone, as a job's error is.
    if (e instanceof DatasetPathError)
      throw new TrainCommandError(
        'TRAINING_FAILED',
        `${e.message}; here the data root is ${dataRoot} (--data-root, else DATA_ROOT, else the working directory)`,
        e,
      );
    if (e instanceof DatasetError || e instanceof CheckpointError || e instanceof TrainingError || e instanceof WasmAbortedError)
      throw new TrainCommandError('TRAINING_FAILED', e.message, e);
    throw e;
  } finally {
    clear();
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }
}
