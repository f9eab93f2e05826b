// TRAIN_THREADS > 1 through the engine (runTraining with stepThreads 2), on the wasm backend the
// machine trains on: the run starts its step peer, trains, evaluates, checkpoints and resumes, and
// its first step is the 1-thread step. (data-parallel-step.test.ts compares steps in detail.)
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveTrainingConfig } from '../../../src/config/training-config.js';
import { runTraining, stepWorld } from '../../../src/ml/train.js';
import { selectBackend } from '../../../src/ml/backend.js';
import { buildArch, forwardMacsPerImage } from '../../../src/ml/mobilenet-arch.js';
import { loadCheckpoint } from '../../../src/ml/checkpoint.js';
import { loadTrainedModel } from '../../../src/ml/trained-model.js';
import { loadDataset } from '../../../src/data/index.js';
import type { StepMetric } from '../../../src/ml/train-api.js';

process.env.TFJS_BACKEND ||= 'wasm';

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'qatserve-dp-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

// 2 float steps, then QAT; BN statistics freeze after step 5. Batch 7 does not split evenly;
// dropout 0.2 (the default) draws a mask over the whole batch.
const config = resolveTrainingConfig({
  dataset: { type: 'synthetic', classes: 4, samplesPerClass: 8, valPerClass: 2 },
  model: { widthMultiplier: 0.35, inputSize: 32, smallInputStem: 'off' },
  training: { batchSize: 7, epochs: 2, seed: 11, augment: true, keepCheckpoints: 5 },
  quantization: { delaySteps: 2, freezeBnAfterSteps: 5 },
});

async function train(name: string, stepThreads: number, extra: { resumeFrom?: string; stopAt?: number; dataThread?: boolean } = {}) {
  const steps: StepMetric[] = [];
  const lines: string[] = [];
  const ac = new AbortController();
  const r = await runTraining({
    config,
    workDir: path.join(tmp, name),
    dataRoot: tmp,
    stepThreads,
    forceStepSplit: true,
    dataThread: extra.dataThread,
    resumeFrom: extra.resumeFrom,
    keepEvalLogits: 5,
    signal: ac.signal,
    logger: { info: (a: unknown, b?: string) => void lines.push(String(b ?? a)), warn: () => {}, error: () => {} },
    callbacks: {
      onStep: (m) => {
        steps.push(m);
        if (m.step === extra.stopAt) ac.abort();
      },
    },
  });
  return { r, steps, lines };
}

describe('how many threads a step is split over', () => {
  const macs = (w: number, inputSize: number) =>
    forwardMacsPerImage(buildArch({ inputSize, numClasses: 10, widthMultiplier: w, smallInputStem: 'off', dropout: 0.2 }));
  it('splits the seed configuration (1.0 at 224 px) and keeps small steps on one thread', async () => {
    const backend = await selectBackend();
    expect(macs(1, 224) / 1e6).toBeCloseTo(299.5, 0); // MobileNetV2 1.0's published 300M multiply-adds
    expect(stepWorld(2, backend, 8, macs(1, 224))).toBe(2);
    expect(stepWorld(4, backend, 8, macs(1, 224))).toBe(4);
    expect(stepWorld(2, backend, 1, macs(1, 224))).toBe(1); // one row cannot be split
    expect(stepWorld(2, backend, 16, macs(0.35, 32))).toBe(1); // 9.5M per thread: measured slower split
    expect(stepWorld(2, 'tensorflow', 8, macs(1, 224))).toBe(1); // no shared batch norm there
  });
});

describe('training with each step split over 2 threads', () => {
  it('runs a whole job (float, QAT, frozen BN, eval, checkpoints) and stops and resumes', async () => {
    const one = await train('one', 1);
    const two = await train('two', 2);
    expect(two.lines).toContain('training steps split over 2 threads');
    expect(one.lines).toContain('training steps split over 1 thread');
    expect(two.r.status).toBe('completed');
    expect(two.steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(two.steps.every((s) => Number.isFinite(s.loss))).toBe(true);
    // The first step starts from the same weights: the same loss up to reassociation.
    expect(Math.abs(two.steps[0].loss - one.steps[0].loss)).toBeLessThan(1e-4);
    expect((await loadCheckpoint(two.r.checkpoint)).manifest.step).toBe(8);
    expect(two.r.eval?.step).toBe(8);
    // The final evaluation's rows came from both threads: each kept row is the checkpoint's own
    // logits for that image (what the export verifies its file against).
    const kept = two.r.evalLogits!;
    expect(kept.rows).toEqual([0, 1, 3, 4, 6]);
    const model = await loadTrainedModel(two.r.checkpoint);
    try {
      const ds = await loadDataset(config.dataset, { dataRoot: tmp, inputSize: 32 });
      const b = await ds.val.batch(kept.rows, { augment: false, seed: 0, epoch: 0, step: 0 });
      const own = await model.predict(b.x, b.n);
      kept.int8!.forEach((v, i) => expect(v).toBeCloseTo(own[i], 4));
    } finally {
      model.dispose();
    }

    // Stopped after step 3 and resumed on 2 threads: the peers take the checkpoint's state.
    const stopped = await train('resume', 2, { stopAt: 3 });
    expect(stopped.r.status).toBe('stopped');
    const resumed = await train('resume', 2, { resumeFrom: path.join(tmp, 'resume') });
    expect(resumed.r.status).toBe('completed');
    expect(resumed.steps.map((s) => s.step)).toEqual([4, 5, 6, 7, 8]);
    expect(Math.abs(resumed.steps[0].loss - two.steps[3].loss)).toBeLessThan(0.05);
  });

  it('trains the same model whether the batch thread prepares the rows the training threads render, or they come inline', async () => {
    const threaded = await train('rows-thread', 2);
    const inline = await train('rows-inline', 2, { dataThread: false });
    expect(threaded.lines).toContain('training batches prepared in a separate thread, rendered by the training threads');
    expect(inline.lines).toContain('training batches prepared inline, rendered by the training threads');
    expect(threaded.steps.map((s) => s.loss)).toEqual(inline.steps.map((s) => s.loss));
    expect(threaded.r.eval).toEqual(inline.r.eval);
  });
});
