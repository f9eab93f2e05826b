import { selectBackend } from '/work/wt/speed/src/ml/backend.js';
import { buildArch, MobileNetV2 } from '/work/wt/speed/src/ml/mobilenet-v2.js';
import { MomentumSgd } from '/work/wt/speed/src/ml/optimizer.js';
import { trainStep } from '/work/wt/speed/src/ml/train.js';
import { DataParallelStep } from '/work/wt/speed/src/ml/data-parallel/data-parallel-step.js';
const backend = await selectBackend({ prefer: 'wasm' });
const dropout = Number(process.argv[2] ?? 0.2);
function mk() {
  const arch = buildArch({ inputSize: 32, numClasses: 4, widthMultiplier: 0.35, smallInputStem: (process.env.STEM ?? 'off') as 'off', dropout });
  const model = new MobileNetV2(arch, 0.999, 1, Number(process.env.WB ?? 8) as 7);
  const opt = new MomentumSgd({ momentum: 0.9, weightDecay: Number(process.env.WD ?? 0) });
  const params = [...model.params.values()].filter((p) => p.trainable).map((p) => ({ name: p.name, variable: p.variable, decay: p.role === 'weight' }));
  const byVar = new Map([...model.params.values()].map((p) => [p.variable.name, p.name]));
  return { model, opt, params, byVar };
}
const n = Number(process.env.N ?? 8), size = 32;
const x = Float32Array.from({ length: n * size * size * 3 }, (_, i) => Math.sin(i * 12.9898) * 1.5);
const y = Int32Array.from({ length: n }, (_, i) => i % 4);
const mode = { training: true, fakeQuant: false, bnBatchStats: true, observeRanges: true, dropoutSeed: 5 };
const a = mk(); const b = mk();
const l1 = trainStep({ model: a.model, opt: a.opt, params: a.params, byVarName: a.byVar, x, y, n, size, mode, lr: Number(process.env.LR ?? 0.1), labelSmoothing: 0.1 });
let l2; let dp;
if (process.argv[3] === 'perm') {
  const per = size*size*3; const xp = new Float32Array(x.length); const yp = new Int32Array(n);
  for (let i = 0; i < n; i++) { const j = (i + n/2) % n; xp.set(x.subarray(j*per, (j+1)*per), i*per); yp[i] = y[j]; }
  (globalThis as any).xp = xp; (globalThis as any).yp = yp;
  l2 = trainStep({ model: b.model, opt: b.opt, params: b.params, byVarName: b.byVar, x: xp, y: yp, n, size, mode, lr: Number(process.env.LR ?? 0.1), labelSmoothing: 0.1 });
} else {
dp = await DataParallelStep.open({ world: Number(process.env.W ?? 2), backend, model: b.model, opt: b.opt, params: b.params, emaDecay: 0.999, seed: 1 });
await dp.sync(b.model, b.opt);
l2 = dp.step({ x, y, n, size, mode, lr: Number(process.env.LR ?? 0.1), labelSmoothing: 0.1 });
}
console.log('loss', l1, l2);
import { snapshotState, restoreState } from '/work/wt/speed/src/ml/model-state.js';
for (let k = 0; k < 3; k++) {
  if (process.env.RESYNC) { const st = await snapshotState(a.model, a.opt); restoreState(b.model, b.opt, new Map(st.map((t) => [t.name, t])), true); b.model.ranges.load(a.model.ranges.toJSON()); await dp?.sync(b.model, b.opt);
    let bad = 0; for (const [name, p] of a.model.params) { const va = p.variable.dataSync(), vb = b.model.params.get(name)!.variable.dataSync(); for (let i = 0; i < va.length; i++) if (va[i] !== vb[i]) { bad++; if (bad < 3) console.log('mismatch after resync', name, i, va[i], vb[i]); break; } }
    for (const [name, t] of a.opt.buffers) { const va = t.dataSync(), vb = b.opt.buffers.get(name)!.dataSync(); for (let i = 0; i < va.length; i++) if (va[i] !== vb[i]) { console.log('mom mismatch', name); break; } }
    console.log('params mismatching after resync', bad); }
  const m2 = { ...mode, fakeQuant: !process.env.FLOAT, dropoutSeed: 9 + k };
  const q1 = trainStep({ model: a.model, opt: a.opt, params: a.params, byVarName: a.byVar, x, y, n, size, mode: m2, lr: Number(process.env.LR ?? 0.1), labelSmoothing: 0.1 });
  const q2 = dp ? dp.step({ x, y, n, size, mode: m2, lr: Number(process.env.LR ?? 0.1), labelSmoothing: 0.1 }) : trainStep({ model: b.model, opt: b.opt, params: b.params, byVarName: b.byVar, x: (globalThis as any).xp, y: (globalThis as any).yp, n, size, mode: m2, lr: Number(process.env.LR ?? 0.1), labelSmoothing: 0.1 });
  const rows2 = [];
  for (const [name, p] of a.model.params) {
    const va = p.variable.dataSync(), vb = b.model.params.get(name)!.variable.dataSync();
    let d = 0, m = 0; for (let i = 0; i < va.length; i++) { d = Math.max(d, Math.abs(va[i] - vb[i])); m = Math.max(m, Math.abs(va[i])); }
    rows2.push([name, d / Math.max(m, 0.01)]);
  }
  rows2.sort((p, q) => (q[1] as number) - (p[1] as number));
  console.log('qat loss', q1, q2, JSON.stringify(rows2.slice(0, 2)));
}
const rows = [];
for (const [name, p] of a.model.params) {
  const va = p.variable.dataSync(), vb = b.model.params.get(name)!.variable.dataSync();
  let d = 0, m = 0; for (let i = 0; i < va.length; i++) { d = Math.max(d, Math.abs(va[i] - vb[i])); m = Math.max(m, Math.abs(va[i])); }
  if (name.endsWith('/w') || name.endsWith('gamma')) rows.push([name, d / m]);
}
rows.sort((p, q) => (q[1] as number) - (p[1] as number));
console.log(rows.slice(0, 12));
await dp?.close();
