// The optimizer and BN running statistics update tensor storage directly on wasm (tensor-memory.ts)
// instead of running tfjs ops. That must not change a single bit of training, and the next forward
// pass must see the new weights (XNNPACK caches packed weights by tensor id).
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../../src/ml/backend.js';
import { tf } from '../../src/ml/tf.js';
import { buildArch, MobileNetV2 } from '../../src/ml/mobilenet-v2.js';
import { MomentumSgd, sgdUpdate, type SgdParam } from '../../src/ml/optimizer.js';
import { sgdUpdateOnHeap } from '../../src/ml/backends/wasm-training/index.js';
import { liveF32 } from '../../src/ml/tensor-memory.js';
import { trainStep } from '../../src/ml/train.js';

process.env.TFJS_BACKEND ||= 'wasm';

function replica() {
  const arch = buildArch({ inputSize: 32, numClasses: 4, widthMultiplier: 0.35, smallInputStem: 'off', dropout: 0.2 });
  const model = new MobileNetV2(arch, 0.999, 1);
  const opt = new MomentumSgd({ momentum: 0.9, weightDecay: 4e-5 });
  const params: SgdParam[] = [...model.params.values()]
    .filter((p) => p.trainable)
    .map((p) => ({ name: p.name, variable: p.variable, decay: p.role === 'weight' }));
  return { model, opt, params, byVarName: new Map([...model.params.values()].map((p) => [p.variable.name, p.name])) };
}

describe('updates written into tensor storage', () => {
  it('train bit for bit like the tfjs-ops updates, and the next step sees the new weights', async () => {
    await selectBackend();
    const a = replica();
    const b = replica();
    const n = 8;
    const x = Float32Array.from({ length: n * 32 * 32 * 3 }, (_, i) => Math.sin(i * 12.9898) * 1.5);
    const y = Int32Array.from({ length: n }, (_, i) => i % 4);
    for (let s = 0; s < 4; s++) {
      const mode = { training: true, fakeQuant: s >= 2, bnBatchStats: true, observeRanges: true, dropoutSeed: s, bnMomentum: 0.9 };
      const input = { x, y, n, size: 32, mode, lr: 0.05, labelSmoothing: 0.1 };
      const la = trainStep({ ...input, ...a });
      // A second holder of one of b's buffers makes every in-place write refuse: b takes the tfjs-ops paths.
      const holders = [b.model.v('stem/gamma'), b.model.v('stem/runMean'), b.opt.buffers.get('stem/gamma')].filter((t) => t).map((t) => tf.clone(t!));
      const lb = trainStep({ ...input, ...b });
      holders.forEach((t) => t.dispose());
      expect(la, `loss of step ${s}`).toBe(lb);
      for (const [name, p] of a.model.params) expect(p.variable.dataSync(), name).toEqual(b.model.v(name).dataSync());
      for (const [name, t] of a.opt.buffers) expect(t.dataSync(), `momentum ${name}`).toEqual(b.opt.buffers.get(name)!.dataSync());
    }
    for (const r of [a, b]) {
      r.opt.dispose();
      r.model.dispose();
    }
  });

  it('the SIMD update (wasm heap) equals the JS loop bit for bit: decay or not, first step or not, any length, gradient on the heap or in shared memory', async () => {
    await selectBackend();
    for (const n of [1, 7, 64, 1003]) {
      for (const decay of [0, 4e-5]) {
        for (const firstStep of [true, false]) {
          const o = { firstStep, decay, momentum: 0.9, lr: 0.05 };
          // Weights, gradient and momentum of mixed magnitudes, on the heap (tensors) and as JS copies.
          const vals = (seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 7.1 + seed) * 10 ** ((i % 7) - 3));
          const [jw, jg, jv, jout] = [1, 2, 3, 4].map(vals);
          sgdUpdate(jw, jg, jv, jout, o);
          // A split step's summed gradients are in a SharedArrayBuffer, off the heap.
          const shared = new Float32Array(new SharedArrayBuffer(4 * n));
          shared.set(vals(2));
          for (const where of ['heap', 'shared memory']) {
            const [w, g, v, out] = [1, 2, 3, 4].map((k) => tf.tensor1d(vals(k)));
            const [hw, hg, hv, hout] = [w, g, v, out].map((t) => liveF32(t)!);
            expect(sgdUpdateOnHeap(hw, where === 'heap' ? hg : shared, hv, hout, o), `ran in the SIMD module (gradient in ${where})`).toBe(true);
            const label = `n=${n} decay=${decay} first=${firstStep} gradient in ${where}`;
            expect(liveF32(out), `out ${label}`).toEqual(jout);
            expect(liveF32(v), `momentum ${label}`).toEqual(jv);
            tf.dispose([w, g, v, out]);
          }
        }
      }
    }
  });

  it('the SIMD update with a gradient in shared memory is right when copying it in grows the wasm heap', async () => {
    await selectBackend();
    const be = tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } };
    const o = { firstStep: false, decay: 4e-5, momentum: 0.9, lr: 0.05 };
    // The scratch (4n bytes) is larger than the whole heap was before w, v and out grew it, and
    // so than anything those growths left free.
    const n = (be.wasm.HEAPU8.length >> 2) + (1 << 20);
    const vals = (seed: number) => Float32Array.from({ length: n }, (_, i) => ((i * 2654435761 + seed * 97) % 1000) / 1000 - 0.5);
    const [jw, jg, jv, jout] = [1, 2, 3, 4].map(vals);
    sgdUpdate(jw, jg, jv, jout, o);
    const shared = new Float32Array(new SharedArrayBuffer(4 * n));
    shared.set(jg);
    const [w, v, out] = [1, 3, 4].map((k) => tf.tensor1d(vals(k)));
    const before = be.wasm.HEAPU8.buffer;
    expect(sgdUpdateOnHeap(liveF32(w)!, shared, liveF32(v)!, liveF32(out)!, o)).toBe(true);
    expect(be.wasm.HEAPU8.buffer, 'the heap grew').not.toBe(before);
    // Byte comparison: toEqual over millions of elements takes a minute.
    const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    expect(bytes(liveF32(out)!).equals(bytes(jout)), 'weights equal the JS loop').toBe(true);
    expect(bytes(liveF32(v)!).equals(bytes(jv)), 'momentum equals the JS loop').toBe(true);
    tf.dispose([w, v, out]);
  });
});
