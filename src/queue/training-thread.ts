// The training thread: runs the real trainer (src/ml) and then the int8 export with its
// verification (src/export), reporting everything to the worker process as messages. It knows
// nothing of Bull, Prisma or Redis.
import { parentPort, workerData } from 'node:worker_threads';
import type { TrainOptions, TrainResult } from '../ml/train-api.js';
import type { ExportResult, FromThread, ThreadInput, ToThread } from './thread-protocol.js';

type RunTraining = (opts: TrainOptions) => Promise<TrainResult>;
type ExportJobModel = (args: {
  jobId: string;
  config: ThreadInput['config'];
  checkpoint: string;
  outDir: string;
  dataRoot: string;
  log: { info(msg: string, extra?: object): void; warn(msg: string, extra?: object): void };
}) => Promise<ExportResult>;

const port = parentPort!;
const input = workerData as ThreadInput;
const controller = new AbortController();
const post = (m: FromThread) => port.postMessage(m);

port.on('message', (m: ToThread) => {
  if (m.type === 'abort') controller.abort();
});

const log = {
  info: (msg: string, extra?: object) => post({ type: 'log', level: 'info', msg, extra }),
  warn: (msg: string, extra?: object) => post({ type: 'log', level: 'warn', msg, extra }),
};

/** Loads a named export from the first module that exists (module paths are layer entry points). */
async function load<T>(specifiers: string[], name: string): Promise<T> {
  let last: unknown;
  for (const s of specifiers) {
    try {
      const mod = (await import(s)) as Record<string, unknown>;
      if (typeof mod[name] === 'function') return mod[name] as T;
      last = new Error(`${s} has no export ${name}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
      last = err;
    }
  }
  throw Object.assign(new Error(`${name} is not available: ${(last as Error).message}`), { code: 'ENGINE_UNAVAILABLE' });
}

const codeOf = (err: unknown, fallback: string) =>
  typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : fallback;

async function main(): Promise<void> {
  let result: TrainResult;
  try {
    const runTraining = await load<RunTraining>(['../ml/index.js', '../ml/train.js'], 'runTraining');
    result = await runTraining({
      config: input.config,
      workDir: input.workDir,
      dataRoot: input.dataRoot,
      resumeFrom: input.resumeFrom,
      initFrom: input.initFrom,
      signal: controller.signal,
      logger: log,
      callbacks: {
        onStart: (info) => post({ type: 'start', info }),
        onStep: (metric) => post({ type: 'step', metric }),
        onEval: (metric) => post({ type: 'eval', metric }),
        onCheckpoint: (checkpoint) => post({ type: 'checkpoint', checkpoint }),
        onWarning: (warning) => post({ type: 'warning', warning }),
      },
    });
  } catch (err) {
    post({ type: 'error', phase: 'train', code: codeOf(err, 'TRAINING_FAILED'), message: (err as Error).message });
    return;
  }
  post({ type: 'trained', result });
  if (result.status !== 'completed') return;

  post({ type: 'exporting' });
  try {
    const exportJobModel = await load<ExportJobModel>(['../export/index.js', '../export/export-job.js'], 'exportJobModel');
    const exported = await exportJobModel({
      jobId: input.jobId,
      config: input.config,
      checkpoint: result.checkpoint,
      outDir: input.modelDir,
      dataRoot: input.dataRoot,
      log,
    });
    post({ type: 'exported', result: exported });
  } catch (err) {
    post({ type: 'error', phase: 'export', code: codeOf(err, 'EXPORT_FAILED'), message: (err as Error).message });
  }
}

main().finally(() => port.unref());
