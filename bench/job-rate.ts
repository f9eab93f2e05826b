// What a job reports as progress.imagesPerSecond, for bench/train.ts's workloads: the real trainer
// (runTraining, as the worker's training thread runs it) on the synthetic data set with
// augmentation, QAT from the first step, the standard stride-32 layout, and the batches rendered
// in the batch thread (--inline: on the training thread, the old pipeline). Prints the last
// reported rate, which should match bench/train.ts's `qat` figure for the same workload.
//
//   npx tsx bench/job-rate.ts                       # the three workloads, 12 steps each
//   npx tsx bench/job-rate.ts --only 1x224x8 --steps 20 --inline
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { resolveTrainingConfig } from '../src/jobs/training-config.js';
import { runTraining } from '../src/ml/train.js';

const { values: opt } = parseArgs({
  options: {
    steps: { type: 'string', default: '12' },
    only: { type: 'string' },
    inline: { type: 'boolean', default: false },
  },
});
const steps = Number(opt.steps);
const WORKLOADS: Array<[number, number, number]> = [
  [0.35, 32, 16],
  [1.0, 32, 32],
  [1.0, 224, 8],
];

for (const [w, size, bs] of WORKLOADS) {
  if (opt.only && opt.only !== `${w}x${size}x${bs}`) continue;
  const classes = 10;
  const config = resolveTrainingConfig({
    dataset: { type: 'synthetic', classes, samplesPerClass: Math.ceil((bs * steps) / classes), valPerClass: 1 },
    model: { widthMultiplier: w, inputSize: size, smallInputStem: 'off' },
    training: { epochs: 1, batchSize: bs, maxSteps: steps, learningRate: 0.01 },
    quantization: { delaySteps: 0 },
  });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qatserve-job-rate-'));
  const rates: number[] = [];
  let backend = '';
  try {
    const r = await runTraining({
      config, workDir: dir, dataRoot: dir, dataThread: !opt.inline,
      callbacks: { onStep: (m) => void rates.push(m.imagesPerSecond) },
    });
    backend = r.backend;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const rssMB = process.resourceUsage().maxRSS / 1024;
  console.log(
    `job w=${w} size=${size} bs=${bs} layout=standard backend=${backend} batches=${opt.inline ? 'inline' : 'thread'} steps=${steps}: ` +
    `progress.imagesPerSecond ${rates.at(-1)!.toFixed(1)} img/s (qat), max rss ${rssMB.toFixed(0)} MB`,
  );
}
