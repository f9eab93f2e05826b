// The training thread: runs the real trainer (src/ml) and then the int8 export with its
// verification (src/export), reporting everything to the worker process as messages. It knows
// nothing of Bull, Prisma or Redis.
import { parentPort, workerData } from 'node:worker_threads';
import { DEFAULT_VERIFY_IMAGES, exportJobModel, onnxFloatScorer, onnxInt8Scorer } from '../export/index.js';
import { assertFits } from '../jobs/job-admission.js';
import { runTraining, selectBackend } from '../ml/index.js';
import type { CheckpointInfo, TrainResult } from '../ml/train-api.js';
import { threadError, type FromThread, type ThreadInput, type ToThread } from './thread-protocol.js';
import { logParts, type Logger } from '../logger.js';

const port = parentPort!;
const input = workerData as ThreadInput;
const controller = new AbortController();
const post = (m: FromThread) => {
  try {
    port.postMessage(m);
  } catch {
    // A log line's extra data that cannot be cloned (functions, handles): send it without.
    if (m.type === 'log') port.postMessage({ ...m, extra: undefined });
    else throw new Error(`cannot send ${m.type} message to the worker`);
  }
};

const exportController = new AbortController();
const storing = new Map<number, () => void>();
port.on('message', (m: ToThread) => {
  if (m.type === 'abort') controller.abort();
  else if (m.type === 'stop-export') exportController.abort();
  else if (m.type === 'checkpoint-stored') {
    storing.get(m.step)?.();
    storing.delete(m.step);
  }
});

/** Reports a checkpoint and waits until the worker has stored it (see ToThread). */
function checkpointStored(checkpoint: CheckpointInfo): Promise<void> {
  return new Promise((resolve) => {
    storing.set(checkpoint.step, resolve);
    post({ type: 'checkpoint', checkpoint });
  });
}

// Log lines go to the parent thread, which writes them with the job's id through its own logger.
const forward = (level: 'info' | 'warn') => (a: object | string, b?: string) => {
  const { msg, fields } = logParts(a, b);
  post({ type: 'log', level, msg, extra: fields });
};
const log: Logger = { info: forward('info'), warn: forward('warn'), error: forward('warn') };

async function main(): Promise<void> {
  let result: TrainResult;
  try {
    // The engine as the worker's settings say; runTraining keeps this choice.
    await selectBackend({ logger: log, wasmSimd: input.wasmSimd });
    result = await runTraining({
      config: input.config,
      workDir: input.workDir,
      dataRoot: input.dataRoot,
      resumeFrom: input.resumeFrom,
      initFrom: input.initFrom,
      signal: controller.signal,
      logger: log,
      admit: (classes) => assertFits(input.config, input.budget, classes),
      dataThread: input.trainThreads >= 2,
      stepThreads: input.trainThreads,
      // The export below verifies its file against the final evaluation's logits.
      keepEvalLogits: DEFAULT_VERIFY_IMAGES,
      // Evaluations score on ONNX Runtime: the int8 model as it will be served, the float one
      // because ORT runs it about twice as fast as tfjs (src/export/onnx-scorer.ts).
      int8Scorer: (graph) => onnxInt8Scorer(graph, input.trainThreads),
      floatScorer: (graph) => onnxFloatScorer(graph, input.trainThreads),
      callbacks: {
        onStart: (info) => post({ type: 'start', info }),
        onStep: (metric) => post({ type: 'step', metric }),
        onEval: (metric) => post({ type: 'eval', metric }),
        onPhase: (phase) => post({ type: 'phase', phase }),
        onCheckpoint: checkpointStored,
        onWarning: (warning) => post({ type: 'warning', warning }),
      },
    });
  } catch (err) {
    post({ type: 'error', phase: 'train', ...threadError(err, 'TRAINING_FAILED') });
    return;
  }
  // The logits and the data set stay in this thread: only the export uses them.
  const { evalLogits, dataset, ...trained } = result;
  post({ type: 'trained', result: trained });
  if (result.status !== 'completed') return;

  post({ type: 'exporting' });
  try {
    const exported = await exportJobModel({
      jobId: input.jobId,
      config: input.config,
      checkpoint: result.checkpoint,
      outDir: input.modelDir,
      tmpDir: input.tmpDir,
      dataRoot: input.dataRoot,
      log,
      evalLogits,
      dataset,
      signal: exportController.signal,
      // MODEL_AT_CHANCE: the job succeeds, but says (in its warnings and the log) that it learned nothing.
      onWarning: (warning) => post({ type: 'warning', warning }),
      onPhase: (phase) => post({ type: 'phase', phase }),
    });
    post({ type: 'exported', result: exported });
  } catch (err) {
    post({ type: 'error', phase: 'export', ...threadError(err, 'EXPORT_FAILED') });
  }
}

void main().finally(() => port.unref());
