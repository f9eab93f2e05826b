// Training throughput: images/s of one optimizer step (forward, backward, momentum SGD update),
// float and QAT, on the active backend (TFJS_BACKEND overrides), plus peak tensor memory.
//
//   npx tsx bench/train.ts                        # the three reference workloads
//   npx tsx bench/train.ts --steps 3 --only 0.35x32x16
//
// One line per workload. Inputs are random normalized images: throughput does not depend on
// the pixels. QAT = fake-quantized weights and activations with EMA range updates, BN folded with
// batch statistics (the expensive training mode).
import { tf } from '../src/ml/tf.js';
import { selectBackend } from '../src/ml/backend.js';
import { buildArch, MobileNetV2, type ForwardMode } from '../src/ml/mobilenet-v2.js';
import { MomentumSgd, type SgdParam } from '../src/ml/optimizer.js';
import { trainStep } from '../src/ml/train.js';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const steps = Number(opt('steps') ?? 5);
const only = opt('only');
const WORKLOADS: Array<[number, number, number]> = [
  [0.35, 32, 16],
  [1.0, 32, 32],
  [1.0, 224, 8],
];

const backend = await selectBackend();

async function measure(model: MobileNetV2, bs: number, size: number, fakeQuant: boolean): Promise<{ ips: number; peakMB: number }> {
  const sgd = new MomentumSgd({ momentum: 0.9, weightDecay: 4e-5 });
  const params: SgdParam[] = [...model.params.values()].filter((p) => p.trainable)
    .map((p) => ({ name: p.name, variable: p.variable, decay: p.role === 'weight' }));
  const byVar = new Map([...model.params.values()].map((p) => [p.variable.name, p.name]));
  const x = Float32Array.from({ length: bs * size * size * 3 }, (_, i) => Math.sin(i * 12.9898) * 1.5);
  const y = Int32Array.from({ length: bs }, (_, i) => i % model.arch.numClasses);
  const mode = (s: number): ForwardMode => ({ training: true, fakeQuant, bnBatchStats: true, observeRanges: true, dropoutSeed: s });
  // Warm-up step (kernel set-up, ranges initialised), and the memory peak measured on it.
  const memBefore = tf.memory().numBytes;
  const profiled = await tf.profile(() => { trainStep(model, sgd, params, byVar, x, y, bs, size, mode(0), 0.01, 0.1); });
  const peak = profiled.peakBytes;
  const t0 = performance.now();
  for (let s = 1; s <= steps; s++) trainStep(model, sgd, params, byVar, x, y, bs, size, mode(s), 0.01, 0.1);
  const secs = (performance.now() - t0) / 1000;
  sgd.dispose();
  return { ips: (steps * bs) / secs, peakMB: Math.max(peak, tf.memory().numBytes - memBefore) / 2 ** 20 };
}

for (const [w, size, bs] of WORKLOADS) {
  if (only && only !== `${w}x${size}x${bs}`) continue;
  const arch = buildArch({ inputSize: size, numClasses: 10, widthMultiplier: w, smallInputStem: 'auto', dropout: 0.2 });
  const model = new MobileNetV2(arch, 0.999, 1);
  try {
    const float = await measure(model, bs, size, false);
    const qat = await measure(model, bs, size, true);
    const rssMB = process.resourceUsage().maxRSS / 1024;
    console.log(
      `train w=${w} size=${size} bs=${bs} backend=${backend} steps=${steps}: ` +
      `float ${float.ips.toFixed(1)} img/s, qat ${qat.ips.toFixed(1)} img/s, ` +
      `peak tensors ${Math.max(float.peakMB, qat.peakMB).toFixed(0)} MB, max rss ${rssMB.toFixed(0)} MB`,
    );
  } catch (e) {
    console.log(`train w=${w} size=${size} bs=${bs} backend=${backend}: failed: ${(e as Error).message.split('\n')[0]}`);
  } finally {
    model.dispose();
  }
}
