// Accuracy on Fashion-MNIST (the real 10,000 test images), MobileNetV2 width 0.35 at 32x32:
// float training, then QAT fine-tuning initialised from the float checkpoint (the `init.fromJob`
// path), at most 5 epochs in total. Prints float top-1 and fake-quant top-1.
//
//   npx tsx bench/accuracy.ts                      # 3 float + 2 QAT epochs, 60k train images
//   FLOAT_EPOCHS=1 QAT_EPOCHS=1 LIMIT=2000 TEST_LIMIT=1000 npx tsx bench/accuracy.ts   # smoke run
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveTrainingConfig } from '../src/config/training-config.js';
import { runTraining } from '../src/ml/train.js';

const env = (k: string, d: number) => (process.env[k] ? Number(process.env[k]) : d);
const floatEpochs = env('FLOAT_EPOCHS', 3);
const qatEpochs = env('QAT_EPOCHS', 2);
if (floatEpochs + qatEpochs > 5) throw new Error('the benchmark allows at most 5 epochs in total');
const dataset = { type: 'fashion-mnist' as const, limit: env('LIMIT', 60_000), testLimit: env('TEST_LIMIT', 10_000) };
// STEM=off runs the paper's stride-32 stem at 32x32 (for comparing the small-input stem).
const model = { widthMultiplier: 0.35, inputSize: 32, smallInputStem: (process.env.STEM ?? 'auto') as 'auto' | 'on' | 'off', dropout: 0.1 };
const batchSize = env('BATCH', 64);
const work = await fs.mkdtemp(path.join(os.tmpdir(), 'qatserve-accuracy-'));
const t0 = performance.now();
let lastLine = 0;
const progress = (phase: string) => ({
  onStep: (m: { step: number; loss: number; imagesPerSecond: number }) => {
    if (performance.now() - lastLine > 30_000) {
      lastLine = performance.now();
      process.stderr.write(`${phase} step ${m.step} loss ${m.loss.toFixed(4)} ${m.imagesPerSecond.toFixed(0)} img/s\n`);
    }
  },
  onEval: (e: { epoch: number; top1: number; floatTop1?: number }) => {
    process.stderr.write(`${phase} epoch ${e.epoch}: top-1 ${(e.top1 * 100).toFixed(2)}%\n`);
  },
});

// 1. Float: quantization off (activation ranges are still tracked, for the QAT start).
const float = await runTraining({
  config: resolveTrainingConfig({
    name: 'accuracy-float',
    dataset,
    model,
    training: { epochs: floatEpochs, batchSize, learningRate: 0.1, warmupEpochs: 0.2, seed: 1 },
    quantization: { enabled: false },
  }),
  workDir: path.join(work, 'float'),
  dataRoot: work,
  callbacks: progress('float'),
});

// 2. QAT fine-tuning from the float weights: a tenth of the LR, BN statistics frozen halfway.
let qatTop1 = NaN;
if (qatEpochs > 0) {
  const qatConfig = resolveTrainingConfig({
    name: 'accuracy-qat',
    dataset,
    model,
    training: { epochs: qatEpochs, batchSize, learningRate: 0.01, warmupEpochs: 0, seed: 2 },
    quantization: { enabled: true, delaySteps: 0 },
  });
  const stepsPerEpoch = Math.floor(dataset.limit / batchSize);
  qatConfig.quantization.freezeBnAfterSteps = Math.floor((qatEpochs * stepsPerEpoch) / 2);
  const qat = await runTraining({
    config: qatConfig,
    workDir: path.join(work, 'qat'),
    dataRoot: work,
    initFrom: float.checkpoint,
    callbacks: progress('qat'),
  });
  qatTop1 = qat.eval!.top1;
}
const wall = (performance.now() - t0) / 1000;
console.log(
  `accuracy fashion-mnist w=0.35 size=32 stem=${model.smallInputStem} backend=${float.backend} epochs=${floatEpochs}+${qatEpochs} ` +
    `train=${dataset.limit} test=${dataset.testLimit}: float top-1 ${(float.eval!.top1 * 100).toFixed(2)}%, ` +
    `fake-quant top-1 ${(qatTop1 * 100).toFixed(2)}%, wall ${wall.toFixed(0)} s`,
);
await fs.rm(work, { recursive: true, force: true });
