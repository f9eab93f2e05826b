// What a job reports as progress.imagesPerSecond, for bench/train.ts's workloads: the real trainer
// (runTraining, as the worker's training thread runs it) on the synthetic data set with
// augmentation, QAT from the first step, the standard stride-32 layout, and the batches rendered
// in the batch thread (--inline: on the training thread, the old pipeline). Prints the last
// reported rate, which should match bench/train.ts's `qat` figure for the same workload.
//
//   npx tsx bench/job-rate.ts                       # the three workloads, 12 steps each
//   npx tsx bench/job-rate.ts --only 1x224x8 --steps 20 --inline
//   npx tsx bench/job-rate.ts --compare --rounds 4 --only 0.35x32x16 --steps 30
//   npx tsx bench/job-rate.ts --data fashion-mnist ...  # Fashion-MNIST instead of synthetic images
//   npx tsx bench/job-rate.ts --threads 1 ...            # steps on one thread (default: every core, as qatserve worker)
//   npx tsx bench/job-rate.ts --epoch-steps 10 ...       # 10-step epochs: later epochs reuse the rendered images
//   npx tsx bench/job-rate.ts --thread-cpu ...           # + CPU seconds per OS thread over the last 10 steps
//   npx tsx bench/job-rate.ts --check-heap --only 1x224x8 --steps 100  # issue 12's memory check through a job
//
// --compare runs batch thread and inline alternately (ABBA order), so a machine whose load drifts
// affects both alike, and prints each pair's wall rate over steps 2..N (callbacks included) and
// the median ratio: the overlap's gain.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { resolveTrainingConfig } from '../src/config/training-config.js';
import { STEP_RATE_WINDOW } from '../src/ml/step-rate.js';
import { runTraining } from '../src/ml/train.js';
import { median } from './stats.js';
import { threadCpu, threadCpuSince, type ThreadCpu } from './thread-cpu.js';
import { useTrainingHeapPolicy } from '../src/ml/training-heap.js';
import { describeSnapshot, heapSnapshot, reportHeapCheck, type HeapSnapshot } from './heap-check.js';

const { values: opt } = parseArgs({
  options: {
    steps: { type: 'string', default: '12' },
    only: { type: 'string' },
    inline: { type: 'boolean', default: false },
    compare: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '4' },
    data: { type: 'string', default: 'synthetic' },
    threads: { type: 'string' },
    'force-split': { type: 'boolean', default: false },
    'epoch-steps': { type: 'string' },
    'thread-cpu': { type: 'boolean', default: false },
    'check-heap': { type: 'boolean', default: false },
  },
});
useTrainingHeapPolicy(); // as the worker's process runs its training thread
/** TRAIN_THREADS of a dedicated worker: every core unless --threads says otherwise. */
const threads = Number(opt.threads ?? os.availableParallelism());
const steps = Number(opt.steps);
/**
 * Steps per epoch (synthetic data): default all of them in one epoch, so every batch renders its
 * images for the first time (the first epoch's cost); fewer, and the later epochs reuse them.
 */
const epochSteps = Number(opt['epoch-steps'] ?? steps);
if (!Number.isInteger(epochSteps) || epochSteps < 1) throw new Error(`--epoch-steps ${opt['epoch-steps']}: expected a positive integer`);
if (!['synthetic', 'fashion-mnist'].includes(opt.data)) throw new Error(`--data ${opt.data}: expected synthetic or fashion-mnist`);
const WORKLOADS: Array<[number, number, number]> = [
  [0.35, 32, 16],
  [1.0, 32, 32],
  [1.0, 224, 8],
];

interface Run {
  backend: string;
  /** progress.imagesPerSecond of the last step. */
  reported: number;
  /** Images over the median time of the reported rate's steps (callbacks included): robust to a step another process interrupted. */
  medianStep: number;
  /** Images over the wall time from the end of step 1 to the end of the last step. */
  wall: number;
  /** With --thread-cpu: CPU seconds per OS thread over the reported rate's steps. */
  byThread?: string;
  /** With --check-heap: this thread's (rank 0's) memory after step 10 and after the last step. */
  heap?: [HeapSnapshot, HeapSnapshot];
}

/** The step --check-heap compares the last step with: every kernel and range is set up by then. */
const HEAP_FROM_STEP = 10;
if (opt['check-heap'] && steps <= HEAP_FROM_STEP) throw new Error(`--check-heap needs --steps above ${HEAP_FROM_STEP}`);

async function train(w: number, size: number, bs: number, dataThread: boolean): Promise<Run> {
  const classes = 10;
  const config = resolveTrainingConfig({
    // fashion-mnist: 28 px grey images that sharp resizes on their first use (the first epoch).
    dataset:
      opt.data === 'fashion-mnist'
        ? { type: 'fashion-mnist', limit: Math.max(10, bs * steps), testLimit: 10 }
        : { type: 'synthetic', classes, samplesPerClass: Math.ceil((bs * epochSteps) / classes), valPerClass: 1 },
    model: { widthMultiplier: w, inputSize: size, smallInputStem: 'off' },
    training: { epochs: Math.ceil(steps / epochSteps), batchSize: bs, maxSteps: steps, learningRate: 0.01 },
    quantization: { delaySteps: 0 },
  });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qatserve-job-rate-'));
  const rates: number[] = [];
  const ends: number[] = [];
  let threads0: ThreadCpu[] = [];
  let byThread: string | undefined;
  const heap: HeapSnapshot[] = [];
  try {
    const r = await runTraining({
      config,
      workDir: dir,
      dataRoot: dir,
      dataThread,
      stepThreads: threads,
      forceStepSplit: opt['force-split'],
      callbacks: {
        onStep: (m) => {
          rates.push(m.imagesPerSecond);
          ends.push(performance.now());
          // Over the reported rate's window, read while the step peers and the batch thread still
          // run: they end with the run.
          if (opt['thread-cpu'] && m.step === steps - STEP_RATE_WINDOW) threads0 = threadCpu();
          if (opt['thread-cpu'] && m.step === steps)
            byThread = `${((ends.at(-1)! - ends.at(-1 - STEP_RATE_WINDOW)!) / 1000).toFixed(2)}s wall; ${threadCpuSince(threads0)}`;
          if (opt['check-heap'] && (m.step === HEAP_FROM_STEP || m.step === steps)) heap.push(heapSnapshot());
        },
      },
    });
    // The reported rate's window, by its median step.
    const last = ends.slice(-1 - STEP_RATE_WINDOW);
    const stepMs = last.slice(1).map((t, i) => t - last[i]);
    return {
      backend: r.backend,
      reported: rates.at(-1)!,
      medianStep: (bs * 1000) / median(stepMs),
      wall: ((ends.length - 1) * bs * 1000) / (ends.at(-1)! - ends[0]),
      byThread,
      heap: heap.length === 2 ? [heap[0], heap[1]] : undefined,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

for (const [w, size, bs] of WORKLOADS) {
  if (opt.only && opt.only !== `${w}x${size}x${bs}`) continue;
  const label = `job w=${w} size=${size} bs=${bs} layout=standard data=${opt.data} threads=${threads} epoch-steps=${epochSteps}`;
  if (opt.compare) {
    const ratios: number[] = [];
    const pairs: string[] = [];
    for (let r = 0; r < Number(opt.rounds); r++) {
      const order = r % 2 ? [false, true] : [true, false];
      const got = new Map<boolean, Run>();
      for (const t of order) got.set(t, await train(w, size, bs, t));
      const [th, inl] = [got.get(true)!, got.get(false)!];
      ratios.push(th.wall / inl.wall);
      pairs.push(`${th.wall.toFixed(1)}/${inl.wall.toFixed(1)}`);
    }
    console.log(`${label} steps=${steps}: wall img/s thread/inline ${pairs.join(', ')}; median ratio ${median(ratios).toFixed(2)}x`);
    continue;
  }
  const r = await train(w, size, bs, !opt.inline);
  const rssMB = process.resourceUsage().maxRSS / 1024;
  console.log(
    `${label} backend=${r.backend} batches=${opt.inline ? 'inline' : 'thread'} steps=${steps}: ` +
      `progress.imagesPerSecond ${r.reported.toFixed(1)} img/s (qat; median of its steps: ${r.medianStep.toFixed(1)}; wall over steps 2-${steps}: ${r.wall.toFixed(1)}), max rss ${rssMB.toFixed(0)} MB`,
  );
  if (r.byThread) console.log(`  CPU by thread over steps ${steps - STEP_RATE_WINDOW + 1}-${steps}: ${r.byThread}`);
  if (r.heap) {
    console.log(describeSnapshot(`step ${HEAP_FROM_STEP}`, r.heap[0]));
    console.log(describeSnapshot(`step ${steps}`, r.heap[1]));
    reportHeapCheck(r.heap[0], r.heap[1], HEAP_FROM_STEP);
  }
}
