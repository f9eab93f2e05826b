// Training throughput: images/s of one optimizer step (forward, backward, momentum SGD update),
// float and QAT, on the active backend (TFJS_BACKEND overrides), plus peak tensor memory.
//
//   npx tsx bench/train.ts                              # the three reference workloads
//   npx tsx bench/train.ts --steps 3 --only 0.35x32x16   # --warmup N untimed steps per mode first (30)
//   npx tsx bench/train.ts --stem auto --only 1x32x32   # the engine's default layout at 32 px
//   npx tsx bench/train.ts --profile --only 1x224x8     # + per-kernel times of one float and one QAT step
//   npx tsx bench/train.ts --check-heap [N]             # N QAT steps at 1.0/224/bs8 (or --only), memory check
//   npx tsx bench/train.ts --pytorch                    # + PyTorch on the same workloads, and the ratio
//   npx tsx bench/train.ts --thread-cpu --only 1x224x8  # + the timed steps' CPU seconds per OS thread
//   npx tsx bench/train.ts --barrier-waits --only 1x224x8  # + per thread of a split step, its time at the barriers
//   npx tsx bench/train.ts --endless --only 1x224x8     # after warm-up, QAT steps until killed, one `step N` line each
//
// `threads=N` on each line is the number of threads our training step computes on: --threads
// (default every core, as `qatserve worker`), fewer where a step is too small for a split to pay
// (MIN_SPLIT_MACS in src/ml/train.ts) unless --force-split. --pytorch runs
// bench/train_pytorch.py (torchvision's quantizable MobileNetV2, eager QAT with the onednn qconfig,
// SGD momentum, random data) with /usr/bin/python3 (Debian's python3-torch, python3-torchvision)
// after each of our workloads, never at the same time, with OMP_NUM_THREADS = the cores of this
// machine (--pytorch-threads overrides), and ends the line with `qat ratio` = ours / PyTorch's.
// On a loaded machine PyTorch with 2 OpenMP threads collapses (its threads spin at barriers while
// another process holds a core: 0.35@32 measured 4 img/s against 87 with one thread): compare
// only figures from a quiet machine, or pass --pytorch-threads 1 and say so.
//
// --pytorch-isa native,AVX2 runs PyTorch once per entry with oneDNN (its conv kernels) limited to
// that instruction set (ONEDNN_MAX_CPU_ISA; `native` leaves it unset), one ratio each: on an
// AVX-512 machine, `AVX2` stands in for the AVX2-only machine class of issue 12. Our side needs
// no such switch: wasm SIMD is 128 bits wide on every x86 CPU.
//
// One line per workload. `layout=standard` is torchvision's stride-32 MobileNetV2, the network the
// issue's targets and the PyTorch reference figures are for; it is the default (`--stem off`).
// The engine itself picks a stride-8 stem for inputs below 64 px (`smallInputStem: 'auto'`), about
// 16x the work per image at 32 px: `--stem auto|on` measures that, labelled `layout=stride8-stem`.
//
// Throughput is given twice: wall clock, and by this process's CPU time (user + system). The
// training step runs on one thread, so on a shared machine the CPU figure approximates what the
// step costs with a core to itself. It also counts V8's background threads (GC, wasm tier-up),
// so on an idle machine it reads lower than wall (seen: 0.35@32 QAT 362 wall, 299 CPU).
//
// Inputs are random normalized images: throughput does not depend on the pixels. QAT = fake-
// quantized weights and activations with EMA range updates, BN folded with batch statistics (the
// expensive training mode).
import os from 'node:os';
import { parseArgs } from 'node:util';
import { tf } from '../src/ml/tf.js';
import { selectBackend } from '../src/ml/backend.js';
import { engineSettings } from '../src/config/settings.js';
import { buildArch, forwardMacsPerImage, MobileNetV2, type ArchOptions, type ForwardMode } from '../src/ml/mobilenet-v2.js';
import { MomentumSgd, type SgdParam } from '../src/ml/optimizer.js';
import { stepWorld, trainStep } from '../src/ml/train.js';
import { DataParallelStep } from '../src/ml/data-parallel/data-parallel-step.js';
import type { BarrierWaits } from '../src/ml/data-parallel/shared-collective.js';
import { pytorchRate } from './pytorch-rate.js';
import { median } from './stats.js';
import { formatThreadCpu, threadCpu, threadCpuDeltas, type ThreadCpu } from './thread-cpu.js';
import { useTrainingHeapPolicy } from '../src/ml/training-heap.js';
import { describeSnapshot, heapSnapshot, reportHeapCheck, type HeapSnapshot } from './heap-check.js';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '30' },
    only: { type: 'string' },
    stem: { type: 'string', default: 'off' },
    profile: { type: 'boolean', default: false },
    'check-heap': { type: 'boolean', default: false },
    pytorch: { type: 'boolean', default: false },
    'pytorch-threads': { type: 'string' },
    'pytorch-isa': { type: 'string', default: 'native' },
    threads: { type: 'string' },
    'force-split': { type: 'boolean', default: false },
    'thread-cpu': { type: 'boolean', default: false },
    'barrier-waits': { type: 'boolean', default: false },
    /** For bench/worker-rate.ts, which pauses and resumes this process against a job's worker. */
    endless: { type: 'boolean', default: false },
  },
});
const steps = Number(opt.steps);
const warmup = Number(opt.warmup);
if (!Number.isInteger(warmup) || warmup < 1) throw new Error(`--warmup ${opt.warmup}: expected a positive integer`);
const stem = opt.stem as ArchOptions['smallInputStem'];
if (!['auto', 'on', 'off'].includes(stem)) throw new Error(`--stem ${stem}: expected auto, on or off`);

const WORKLOADS: Array<[number, number, number]> = [
  [0.35, 32, 16],
  [1.0, 32, 32],
  [1.0, 224, 8],
];

useTrainingHeapPolicy(); // as `qatserve worker` and `qatserve train` run
const backend = await selectBackend({ wasmSimd: engineSettings().wasmSimd }); // QATSERVE_WASM_SIMD=0: the JS paths

/** Threads each training step is split over (--threads; default every core, as `qatserve worker`). */
const threads = Number(opt.threads ?? os.availableParallelism());
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads ${opt.threads}: expected a positive integer`);

interface Setup {
  model: MobileNetV2;
  sgd: MomentumSgd;
  /** Threads the step is split over (fewer than asked when the batch is smaller). */
  world: number;
  step(seed: number, fakeQuant: boolean): void;
  /** A split step's group: its ranks' barrier waits. */
  dp: DataParallelStep | null;
  dispose(): Promise<void>;
}

async function setup(w: number, size: number, bs: number): Promise<Setup> {
  const arch = buildArch({ inputSize: size, numClasses: 10, widthMultiplier: w, smallInputStem: stem, dropout: 0.2 });
  const model = new MobileNetV2(arch, 0.999, 1);
  const sgd = new MomentumSgd({ momentum: 0.9, weightDecay: 4e-5 });
  const params: SgdParam[] = [...model.params.values()]
    .filter((p) => p.trainable)
    .map((p) => ({ name: p.name, variable: p.variable, decay: p.role === 'weight' }));
  const byVar = new Map([...model.params.values()].map((p) => [p.variable.name, p.name]));
  const x = Float32Array.from({ length: bs * size * size * 3 }, (_, i) => Math.sin(i * 12.9898) * 1.5);
  const y = Int32Array.from({ length: bs }, (_, i) => i % model.arch.numClasses);
  const mode = (s: number, fakeQuant: boolean): ForwardMode => ({ training: true, fakeQuant, bnBatchStats: true, observeRanges: true, dropoutSeed: s });
  const world = stepWorld(threads, backend, bs, opt['force-split'] ? Infinity : forwardMacsPerImage(arch));
  // The same split the trainer makes (src/ml/train.ts setupRun).
  const dp = world > 1 ? await DataParallelStep.open({ world, backend, model, opt: sgd, params, emaDecay: 0.999, seed: 1 }) : null;
  await dp?.sync(model, sgd);
  const input = (s: number, fq: boolean) => ({ x, y, n: bs, size, mode: mode(s, fq), lr: 0.01, labelSmoothing: 0.1 });
  return {
    model,
    sgd,
    world,
    dp,
    step: (s, fq) => void (dp ? dp.step(input(s, fq)) : trainStep({ model, opt: sgd, params, byVarName: byVar, ...input(s, fq) })),
    dispose: async () => {
      await dp?.close();
      sgd.dispose();
      model.dispose();
    },
  };
}

function layoutName(model: MobileNetV2): string {
  return model.arch.smallInputStem ? 'stride8-stem' : 'standard';
}

interface Rate {
  wall: number;
  /** Images over the median step's time: what a step takes when no other process interrupts it. */
  medianStep: number;
  cpu: number;
  /** With --thread-cpu: the timed steps' CPU seconds per OS thread. */
  byThread?: string;
  /** With --barrier-waits and a split step: each rank's time at barriers per timed step. */
  barrierWaits?: string;
}

/**
 * `warmup` untimed steps of one mode: the first sets up kernels (the float one also initialises
 * the activation ranges QAT needs) and gives the tensor-memory peak, in MB.
 */
async function warmUp(s: Setup, fakeQuant: boolean): Promise<number> {
  const memBefore = tf.memory().numBytes;
  const profiled = await tf.profile(() => s.step(0, fakeQuant));
  for (let i = 1 - warmup; i < 0; i++) s.step(i, fakeQuant);
  return Math.max(profiled.peakBytes, tf.memory().numBytes - memBefore) / 2 ** 20;
}

/** One mode's timed steps, summed over the segments it ran in. */
interface Tally {
  stepMs: number[];
  secs: number;
  cpuSecs: number;
  /** With --thread-cpu: each OS thread's CPU seconds and preemptions. */
  threads: Map<number, ThreadCpu>;
  /** With --barrier-waits and a split step: each rank's waits. */
  waits: BarrierWaits[] | null;
}

const newTally = (): Tally => ({ stepMs: [], secs: 0, cpuSecs: 0, threads: new Map(), waits: null });

/** Steps `from`..`to` of one mode, added to its tally. */
function timeSteps(s: Setup, fakeQuant: boolean, from: number, to: number, t: Tally): void {
  const threads0 = opt['thread-cpu'] ? threadCpu() : null;
  const waits0 = opt['barrier-waits'] ? (s.dp?.barrierWaits() ?? null) : null;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = from; i <= to; i++) {
    const at = performance.now();
    s.step(i, fakeQuant);
    t.stepMs.push(performance.now() - at);
  }
  const c = process.cpuUsage(c0);
  t.secs += (performance.now() - t0) / 1000;
  t.cpuSecs += (c.user + c.system) / 1e6;
  if (threads0) {
    for (const d of threadCpuDeltas(threads0)) {
      const sum = t.threads.get(d.tid);
      t.threads.set(d.tid, sum ? { ...d, seconds: sum.seconds + d.seconds, preempted: sum.preempted + d.preempted, slept: sum.slept + d.slept } : d);
    }
  }
  if (waits0) {
    t.waits = s.dp!.barrierWaits().map((w, r) => {
      const sum = t.waits?.[r];
      const since = (k: keyof BarrierWaits) => (sum?.[k] ?? 0) + w[k] - waits0[r][k];
      return { barriers: since('barriers'), waitMs: since('waitMs'), long: since('long'), longMs: since('longMs') };
    });
  }
}

function rate(t: Tally, bs: number): Rate {
  const n = t.stepMs.length;
  return {
    wall: (n * bs) / t.secs,
    medianStep: (bs * 1000) / median(t.stepMs),
    cpu: (n * bs) / t.cpuSecs,
    byThread: opt['thread-cpu'] ? `${t.secs.toFixed(2)}s wall; ${formatThreadCpu([...t.threads.values()])}` : undefined,
    barrierWaits: t.waits
      ?.map(
        (w, r) =>
          `rank ${r} ${(w.waitMs / n).toFixed(1)} ms a step at ${(w.barriers / n).toFixed(0)} barriers, ` +
          `${(w.longMs / n).toFixed(1)} ms of it in ${(w.long / n).toFixed(1)} waits of 1 ms or more`,
      )
      .join('; '),
  };
}

/**
 * `steps` timed steps of each mode, in the order float, QAT, QAT, float (half of each mode's
 * steps on either side of the other's), so that a drift of the machine's speed during the run, or
 * whatever the mode timed first pays for, counts against neither. Timed float then QAT (until the
 * forty-fourth session), 1.0@224 bs8 on 2 threads came out float 18.2 / 18.9 against QAT 20.2 /
 * 21.1 img/s, and with the order swapped float 22.3 / 22.1 against QAT 21.5 / 19.7: the order,
 * not the mode.
 */
function measure(s: Setup, bs: number): { float: Rate; qat: Rate } {
  const half = Math.ceil(steps / 2);
  const [float, qat] = [newTally(), newTally()];
  timeSteps(s, false, 1, half, float);
  timeSteps(s, true, 1, half, qat);
  timeSteps(s, true, half + 1, steps, qat);
  timeSteps(s, false, half + 1, steps, float);
  return { float: rate(float, bs), qat: rate(qat, bs) };
}

/** Per-kernel time of one step (float or QAT), largest first. */
async function profileStep(s: Setup, fakeQuant: boolean): Promise<void> {
  const prof = await tf.profile(() => s.step(10_000, fakeQuant));
  const byKernel = new Map<string, { ms: number; calls: number }>();
  for (const k of prof.kernels) {
    const e = byKernel.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += k.kernelTimeMs as number;
    e.calls++;
    byKernel.set(k.name, e);
  }
  const total = [...byKernel.values()].reduce((a, e) => a + e.ms, 0);
  for (const [name, e] of [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20)) {
    console.log(
      `  ${name.padEnd(38)} ${e.ms.toFixed(1).padStart(8)} ms ${String(e.calls).padStart(5)} calls ${((100 * e.ms) / total).toFixed(1).padStart(5)}%`,
    );
  }
  console.log(`  total kernel time ${total.toFixed(0)} ms in ${prof.kernels.length} kernel calls (one ${fakeQuant ? 'QAT' : 'float'} step, wall clock)`);
}

/**
 * The memory requirement: MobileNetV2 1.0 at 224, batch 8, trains (QAT) for N steps
 * without growing the heap (bench/heap-check.ts): step 10 against the end. A job's whole trainer,
 * batches included: `npx tsx bench/job-rate.ts --check-heap`.
 */
async function checkHeap(n: number): Promise<void> {
  const [w, size, bs] = opt.only ? opt.only.split('x').map(Number) : [1.0, 224, 8];
  const s = await setup(w, size, bs);
  console.log(`check-heap w=${w} size=${size} bs=${bs} layout=${layoutName(s.model)} backend=${backend} threads=${s.world} steps=${n} (QAT)`);
  s.step(0, false); // ranges for fake quant
  let at10: HeapSnapshot | undefined;
  let t0 = 0;
  let c0 = process.cpuUsage();
  for (let i = 1; i <= n; i++) {
    s.step(i, true);
    if (i === Math.min(10, n)) {
      at10 = heapSnapshot();
      console.log(describeSnapshot(`step ${i}`, at10));
      t0 = performance.now();
      c0 = process.cpuUsage();
    }
  }
  const c = process.cpuUsage(c0);
  const timed = n - Math.min(10, n);
  const end = heapSnapshot();
  console.log(describeSnapshot(`step ${n}`, end));
  if (timed > 0) {
    const wall = ((timed * bs) / (performance.now() - t0)) * 1000;
    const cpu = (timed * bs) / ((c.user + c.system) / 1e6);
    console.log(`  steps 11-${n}: ${wall.toFixed(2)} img/s wall, ${cpu.toFixed(2)} by CPU time`);
  }
  await s.dispose();
  reportHeapCheck(at10!, end, Math.min(10, n));
}

if (opt['check-heap']) {
  await checkHeap(positionals[0] ? Number(positionals[0]) : 100);
} else {
  for (const [w, size, bs] of WORKLOADS) {
    if (opt.only && opt.only !== `${w}x${size}x${bs}`) continue;
    const s = await setup(w, size, bs);
    const label = `train w=${w} size=${size} bs=${bs} layout=${layoutName(s.model)} backend=${backend} threads=${s.world} steps=${steps}`;
    try {
      // Both modes warm before either is timed: V8 tiers the wasm kernels and the JS around them
      // up over the first tens of steps, and the mode timed first paid for it. 0.35@32, 30 steps
      // timed: with 3 warm-up steps each, float 451 img/s timed first, 584 timed again after QAT's
      // 567; with 10 each, float 539 / 610 / 487 vs QAT 577 / 623 / 554; with 30 each, float 584 /
      // 609 vs QAT 526 / 537.
      const peakMB = Math.max(await warmUp(s, false), await warmUp(s, true));
      if (opt.endless) {
        console.log(`${label}: endless QAT steps`);
        for (let i = 1; ; i++) {
          s.step(i, true);
          console.log(`step ${i}`);
        }
      }
      const { float, qat } = measure(s, bs);
      const rssMB = process.resourceUsage().maxRSS / 1024;
      let line =
        `${label}: float ${float.wall.toFixed(1)} img/s, qat ${qat.wall.toFixed(1)} img/s ` +
        `(by CPU time: float ${float.cpu.toFixed(1)}, qat ${qat.cpu.toFixed(1)}; median step: float ${float.medianStep.toFixed(1)}, qat ${qat.medianStep.toFixed(1)}), ` +
        `peak tensors ${peakMB.toFixed(0)} MB, max rss ${rssMB.toFixed(0)} MB`;
      if (opt.pytorch) {
        // torchvision's network is the standard layout; a stride-8 stem is not comparable.
        for (const isa of opt['pytorch-isa'].split(',')) {
          const torch =
            layoutName(s.model) === 'standard'
              ? await pytorchRate(w, size, bs, { steps, warmup, threads: opt['pytorch-threads'], isa })
              : 'only the standard layout (--stem off) is comparable';
          const tag = isa === 'native' ? 'pytorch' : `pytorch isa=${isa}`;
          line +=
            typeof torch === 'string'
              ? ` | ${tag}: ${torch}`
              : ` | ${tag} threads=${torch.threads}: float ${torch.float.toFixed(1)} img/s, qat ${torch.qat.toFixed(1)} img/s | qat ratio ${(qat.wall / torch.qat).toFixed(2)}x`;
        }
      }
      console.log(line);
      if (float.byThread) console.log(`  float CPU by thread: ${float.byThread}\n  qat CPU by thread: ${qat.byThread}`);
      if (float.barrierWaits) console.log(`  float barrier waits: ${float.barrierWaits}\n  qat barrier waits: ${qat.barrierWaits}`);
      if (opt.profile) for (const fakeQuant of [false, true]) await profileStep(s, fakeQuant);
    } catch (e) {
      console.log(`${label}: failed: ${(e as Error).message.split('\n')[0]}`);
    } finally {
      await s.dispose();
    }
  }
}
