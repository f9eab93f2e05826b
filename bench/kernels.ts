// Training-step throughput of a MobileNetV2-shaped QAT model on the wasm backend (with the kernels
// from src/ml/backends/wasm-training) or the cpu backend. Prints one comparable line.
//
//   npx tsx bench/kernels.ts --backend wasm --width 0.35 --size 32 --batch 16 --steps 10
//   npx tsx bench/kernels.ts --backend wasm --profile     # per-kernel time of one step
//
// tfjs-core's gradient registrations ship only as extension-less ESM (dist/register_all_gradients),
// which Node cannot resolve on its own; a tiny resolve hook adds the '.js' Node expects.
import { register } from 'node:module';
import { parseArgs } from 'node:util';

const hook = `
export async function resolve(spec, ctx, next) {
  try { return await next(spec, ctx); }
  catch (e) {
    if (spec.startsWith('.') && ctx.parentURL && ctx.parentURL.includes('/@tensorflow/')) return next(spec + '.js', ctx);
    throw e;
  }
}`;
register('data:text/javascript,' + encodeURIComponent(hook));

const { values: opt } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    width: { type: 'string', default: '0.35' },
    size: { type: 'string', default: '32' },
    batch: { type: 'string', default: '16' },
    steps: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    qat: { type: 'string', default: '1' },
    classes: { type: 'string', default: '10' },
    profile: { type: 'boolean', default: false },
    // 'cifar': stem and first stride-2 stage at stride 1 below 64 px (the engine's 'auto');
    // 'standard': torchvision's stride-32 layout.
    stem: { type: 'string', default: 'cifar' },
    'no-fast-ops': { type: 'boolean', default: false },
  },
});

const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-cpu');
await import('@tensorflow/tfjs-backend-wasm');
await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
const { registerWasmTrainingKernels } = await import('../src/ml/backends/wasm-training/index.js');
const model = await import('../testkit/mobilenet-like.js');

const backend = opt.backend;
const { engineSettings } = await import('../src/config/settings.js');
if (backend === 'wasm') registerWasmTrainingKernels({ simd: engineSettings().wasmSimd }); // QATSERVE_WASM_SIMD=0: the JS paths
await tf.setBackend(backend);
await tf.ready();

const width = Number(opt.width);
const size = Number(opt.size);
const batch = Number(opt.batch);
const arch = model.mobilenetArch(width, size, Number(opt.classes), Infinity, opt.stem === 'cifar' ? size < 64 : false);
const params = model.initParams(arch);
const { x, labels } = model.makeBatch(arch, batch);
const fakeQuant = opt.qat === '1';
let ops = model.stockQatOps;
if (!opt['no-fast-ops']) {
  try {
    const fast = await import('../src/ml/backends/wasm-training/ops.js');
    ops = fast.qatOps;
  } catch {
    // ops.ts not present yet: stock formulation.
  }
}

function step(): number {
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => model.forwardLoss(arch, params, x, labels, { fakeQuant, ops }));
    for (const [name, g] of Object.entries(grads)) {
      const v = tf.engine().registeredVariables[name];
      v.assign(tf.sub(v, tf.mul(g, 0.01)));
    }
    return value.dataSync()[0];
  });
}

for (let i = 0; i < Number(opt.warmup); i++) step();

if (opt.profile) {
  const prof = await tf.profile(() => {
    step();
  });
  const byKernel = new Map<string, number>();
  for (const k of prof.kernels) byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + (k.kernelTimeMs as number));
  const total = [...byKernel.values()].reduce((a, b) => a + b, 0);
  for (const [k, ms] of [...byKernel].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`${k.padEnd(40)} ${ms.toFixed(1).padStart(8)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%`);
  }
  console.log(`total kernel time ${total.toFixed(1)} ms`);
}

const times: number[] = [];
const cpuTimes: number[] = [];
let loss = 0;
const before = tf.memory().numTensors;
for (let i = 0; i < Number(opt.steps); i++) {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  loss = step();
  times.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  // CPU time of this (single-threaded) process: what the step costs when it has a core to itself,
  // a steadier figure than wall time on a shared machine.
  cpuTimes.push((c.user + c.system) / 1000);
}
const leaked = tf.memory().numTensors - before;
times.sort((a, b) => a - b);
cpuTimes.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
const cpuMedian = cpuTimes[Math.floor(cpuTimes.length / 2)];
console.log(
  `train-step backend=${backend} width=${width} size=${size} batch=${batch} stem=${opt.stem} qat=${fakeQuant ? 1 : 0} ` +
    `fastOps=${ops !== model.stockQatOps ? 1 : 0}: ${((batch * 1000) / median).toFixed(1)} images/s ` +
    `(median ${median.toFixed(0)} ms/step over ${times.length}; by process CPU time ${((batch * 1000) / cpuMedian).toFixed(1)} images/s, ` +
    `${cpuMedian.toFixed(0)} ms/step; loss ${loss.toFixed(4)}, tensors leaked ${leaked}` +
    (backend === 'wasm' ? `, wasm heap ${((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length / 2 ** 20).toFixed(0)} MiB)` : ')'),
);
