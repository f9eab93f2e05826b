// The fused QAT ops (ops.ts) on wasm and cpu against the stock tfjs formulation the engine uses,
// values and gradients, plus hand-computed fake-quant values. Batch norm with its activation
// (batchNormAct) against the stock ops it replaces: BN in tfjs ops, the range, ReLU6, the fake quant.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { setSimdEnabled } from '../../../src/ml/backends/wasm-training/simd.js';
import {
  batchNormAct,
  fakeQuantAct,
  fakeQuantRelu6,
  fakeQuantWeight,
  qlinearAdd,
  requantize,
  scaleShiftAct,
} from '../../../src/ml/backends/wasm-training/index.js';
import { qlinearAdd as qlinearAddU8 } from '../../../src/ml/qlinear-add.js';
import { STOCK_QAT_OPS, type BnAct, type BnActPicker, type Range } from '../../../src/ml/qat-ops.js';
import { actQParams } from '../../../src/ml/fake-quant.js';
import { maxRelError, randomValues, tf, useBackend } from './helpers.js';

const report: string[] = [];
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

/** Outputs and gradients of one batch norm + activation, on one backend, with fused or stock ops. */
async function bnActCase(backend: 'cpu' | 'wasm', fusedOp: boolean, shape: number[], pickAct: (r: Range) => BnAct) {
  await useBackend(backend);
  const c = shape[shape.length - 1];
  const bn = (z: tf.Tensor, g: tf.Tensor1D, b: tf.Tensor1D, pick: BnActPicker) =>
    fusedOp ? batchNormAct(z, g, b, 1e-3, pick) : STOCK_QAT_OPS.batchNormAct(z, g, b, 1e-3, pick);
  const ranges: Range[] = [];
  const pick = (r: Range | null) => {
    if (!r) throw new Error('no range');
    ranges.push(r);
    return pickAct(r);
  };
  const values = tf.tidy(() => {
    // Channel means far from zero and spread-out variances: the hard case for one-pass variance.
    const zv = randomValues(size(shape), 71).map((v, i) => v * (1 + (i % c)) + 3 * (i % c));
    const z = tf.tensor(zv, shape);
    const g = tf.tensor1d(randomValues(c, 72).map((v) => v + 1.5));
    const b = tf.tensor1d(randomValues(c, 73));
    const r = tf.tensor(randomValues(size(shape), 74), shape);
    const out = bn(z, g, b, pick);
    // A loss with weights r, so that no gradient is trivially symmetric.
    const grads = tf.grads((zz: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => tf.sum<tf.Scalar>(tf.mul(bn(zz, gg as tf.Tensor1D, bb as tf.Tensor1D, pick).y, r)))(
      [z, g, b],
    );
    return [out.y, ...grads].map((t) => t.dataSync() as Float32Array).concat([out.mean, out.variance]);
  });
  return { values, range: ranges[0] };
}

/** The activations a layer can have: none, ReLU6, a fake quant, both (grid inside [0, 6] or past it). */
const ACTS: Array<[string, (r: Range) => BnAct]> = [
  ['none', () => ({ relu6: false, quant: null })],
  ['relu6', () => ({ relu6: true, quant: null })],
  // Grids narrower than the range, so that both clamps (and their zero gradients) occur.
  ['fq', (r) => ({ relu6: false, quant: actQParams(r.min * 0.8, r.max * 0.7, false) })],
  ['relu6+fq', (r) => ({ relu6: true, quant: actQParams(0, Math.min(r.max, 6) * 0.6, true) })],
  ['relu6+fq past 6', () => ({ relu6: true, quant: { scale: 8 / 255, zeroPoint: 0 } })],
];

for (const simd of [true, false])
  describe(`fused QAT ops match the stock tfjs formulation (${simd ? 'SIMD module' : 'plain JS'} paths on wasm)`, () => {
    beforeAll(() => setSimdEnabled(simd));
    afterAll(() => {
      setSimdEnabled(true);
      console.log(`${simd ? 'SIMD' : 'JS'} paths:\n` + report.splice(0).join('\n'));
    });

    // [200, 3, 3, 20]: the SIMD sums' 8-channel groups plus a 4-channel one, over 3 row blocks.
    const bnShapes = [
      [4, 5, 5, 7],
      [3, 9, 7, 24],
      [2, 3, 3, 1],
      [16, 2, 2, 13],
      [5, 3, 7, 4],
      [64, 4, 4, 48],
      [200, 3, 3, 20],
    ];
    for (const shape of bnShapes) {
      for (const [name, pickAct] of ACTS) {
        test(`batchNormAct ${shape} ${name}: values, range and gradients equal the stock ops on wasm and cpu`, async () => {
          const ref = await bnActCase('cpu', false, shape, pickAct);
          const names = ['y', 'dz', 'dgamma', 'dbeta', 'mean', 'variance'];
          for (const backend of ['wasm', 'cpu'] as const) {
            const got = await bnActCase(backend, true, shape, pickAct);
            expect(got.range.min).toBeCloseTo(ref.range.min, 4);
            expect(got.range.max).toBeCloseTo(ref.range.max, 4);
            names.forEach((n, i) => {
              const err = maxRelError(got.values[i], ref.values[i]);
              report.push(
                `batchNormAct ${backend.padEnd(4)} ${String(shape).padEnd(10)} ${name.padEnd(15)} ${n.padEnd(8)} max rel err ${err.toExponential(2)}`,
              );
              if (n !== 'y' || !name.includes('fq')) return expect(err, `${backend} ${n}`).toBeLessThan(5e-5);
              // Fake-quantized: the statistics differ in the last bits (f64 sums here, f32 there), so
              // a value within rounding of a step's midpoint may land on the neighbouring step.
              const step = pickAct(ref.range).quant!.scale;
              const off = got.values[i].filter((v, j) => Math.abs(v - ref.values[i][j]) > 1e-6);
              expect(off.length, `${backend} y: values off the reference`).toBeLessThanOrEqual(1 + got.values[i].length / 1000);
              expect(maxAbsDiff(got.values[i], ref.values[i])).toBeLessThanOrEqual(step * 1.0001);
            });
          }
        });
      }
    }

    test('batchNormAct runs three kernels (statistics, output, gradient), no separate activation or range', async () => {
      for (const backend of ['wasm', 'cpu'] as const) {
        await useBackend(backend);
        const profile = await tf.profile(() =>
          tf.tidy(() => {
            const z = tf.tensor(randomValues(2 * 4 * 4 * 8, 75), [2, 4, 4, 8]);
            const [g, b] = [tf.ones<tf.Rank.R1>([8]), tf.zeros<tf.Rank.R1>([8])];
            const pick = () => ({ relu6: true, quant: { scale: 4 / 255, zeroPoint: 0 } });
            return tf.grads((zz: tf.Tensor, gg: tf.Tensor) => tf.sum<tf.Scalar>(batchNormAct(zz, gg as tf.Tensor1D, b, 1e-3, pick).y))([z, g]);
          }),
        );
        const kernels = new Set(profile.kernelNames);
        for (const k of ['QatBnStats', 'QatBnAct', 'QatBnActGrad']) expect(kernels, backend).toContain(k);
        for (const k of ['Relu6', 'QatFakeQuant', 'QatFakeQuantGrad', 'QatRelu6Grad', 'Min', 'Max']) expect(kernels, backend).not.toContain(k);
      }
    });

    test('fakeQuantAct values by hand: ties go to even, clamps at the uint8 range', async () => {
      for (const backend of ['wasm', 'cpu'] as const) {
        await useBackend(backend);
        // scale 0.5, zero point 3: representable [-1.5, 126]; 0.25/0.5 = 0.5 -> 0, 0.75 -> 1.5 -> 2,
        // -1.25 -> -2.5 -> -2, -5 clamps to -3 * 0.5, 200 clamps to 252 * 0.5.
        const x = tf.tensor1d([0.25, 0.75, -1.25, -5, 200, 1.1, 0, Infinity, -Infinity, 3e38]);
        const y = fakeQuantAct(x, 0.5, 3);
        expect(Array.from(y.dataSync())).toEqual([0, 1, -1, -1.5, 126, 1, 0, 126, -1.5, 126]);
        const nan = fakeQuantAct(tf.tensor1d([NaN]), 0.5, 3);
        expect(Number.isNaN(nan.dataSync()[0])).toBe(true);
        tf.dispose([x, y]);
      }
    });

    test('fakeQuantAct gradient is straight-through inside the range and zero outside (edges included)', async () => {
      for (const backend of ['wasm', 'cpu'] as const) {
        await useBackend(backend);
        const x = tf.tensor1d([-1.5, -1.51, 0.3, 126, 126.01, 50]);
        const dy = tf.tensor1d([1, 2, 3, 4, 5, 6]);
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(fakeQuantAct(t, 0.5, 3), dy)))(x);
        expect(Array.from(g.dataSync())).toEqual([1, 0, 3, 4, 0, 6]);
        tf.dispose([x, dy, g]);
      }
    });

    test('fakeQuantAct on wasm equals the stock formulation on random data', async () => {
      const n = 5 * 7 * 9 * 11;
      const xv = randomValues(n, 81).map((v) => v * 4);
      const dyv = randomValues(n, 82);
      const stock = async () => {
        await useBackend('cpu');
        return tf.tidy(() => {
          const x = tf.tensor1d(xv);
          const scale = 6 / 255;
          const zp = 128;
          const y = tf.mul(tf.clipByValue(tf.round(tf.div(x, scale)), -zp, 255 - zp), scale);
          const mask = tf.cast(tf.logicalAnd(tf.greaterEqual(x, -zp * scale), tf.lessEqual(x, (255 - zp) * scale)), 'float32');
          return [y.dataSync(), tf.mul(tf.tensor1d(dyv), mask).dataSync()] as Float32Array[];
        });
      };
      const [yRef, gRef] = await stock();
      for (const backend of ['wasm', 'cpu'] as const) {
        await useBackend(backend);
        const [y, g] = tf.tidy(() => {
          const x = tf.tensor1d(xv);
          const out = fakeQuantAct(x, 6 / 255, 128);
          const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(fakeQuantAct(t, 6 / 255, 128), tf.tensor1d(dyv))))(x);
          return [out.dataSync(), grad.dataSync()] as Float32Array[];
        });
        expect(maxRelError(y, yRef)).toBe(0);
        expect(maxRelError(g, gRef)).toBe(0);
        report.push(`fakeQuantAct    ${backend.padEnd(4)} values and gradient: max rel err 0 (bit-exact)`);
      }
    });

    test('scaleShiftAct (BN with running statistics, then the activation) equals the stock ops in one kernel', async () => {
      for (const shape of [
        [3, 5, 5, 8],
        [2, 4, 3, 7], // 7 channels: the JS path on wasm too
      ]) {
        const c = shape[3];
        const z = randomValues(size(shape), 91).map((v) => v * 4);
        const k = randomValues(c, 92).map((v) => v + 1.2);
        const b = randomValues(c, 93);
        const acts: BnAct[] = [
          { relu6: false, quant: null },
          { relu6: true, quant: null },
          { relu6: false, quant: { scale: 0.03, zeroPoint: 120 } },
          { relu6: true, quant: { scale: 6 / 255, zeroPoint: 0 } },
        ];
        for (const act of acts) {
          const run = (fused: boolean) =>
            tf.tidy(() => {
              const args = [tf.tensor(z, shape), tf.tensor1d(k), tf.tensor1d(b), act] as const;
              return (fused ? scaleShiftAct(...args) : STOCK_QAT_OPS.scaleShiftAct(...args)).dataSync() as Float32Array;
            });
          await useBackend('cpu');
          const ref = run(false);
          for (const backend of ['wasm', 'cpu'] as const) {
            await useBackend(backend);
            const got = run(true);
            // === : a zero's sign may differ (ReLU6 of -0), which no later sum can tell.
            expect(
              got.findIndex((v, i) => v !== ref[i]),
              `${backend} ${shape} ${JSON.stringify(act)}`,
            ).toBe(-1);
            const profile = await tf.profile(() => tf.tidy(() => scaleShiftAct(tf.tensor(z, shape), tf.tensor1d(k), tf.tensor1d(b), act)));
            expect(profile.kernelNames, backend).toEqual(['QatBnAct']);
          }
        }
      }
    });

    test("requantize (the int8 graph's) equals the six stock ops bit for bit in one kernel, ties to even", async () => {
      // Integer sums like a convolution's, with biases and multipliers per channel; some products
      // land exactly on .5 (ties), some far outside the clamp, some on -0.
      for (const [shape, zp, lo, hi] of [
        [[3, 5, 5, 8], 0, 0, 255],
        [[2, 7, 3, 12], 118, 0, 255],
        [[4, 3, 3, 3], 7, 7, 180], // 3 channels: the JS path on wasm too
        [[1, 2, 2, 4], 3, 3, 3], // lo = hi: every value clamps
      ] as Array<[number[], number, number, number]>) {
        const c = shape[3];
        const n = size(shape);
        const acc = randomValues(n, 81).map((v, i) => (i % 17 === 0 ? 5 : Math.round(v * 4000)));
        const bias = randomValues(c, 82).map((v) => Math.round(v * 300));
        const mult = Float32Array.from({ length: c }, (_, j) => (j % 2 ? 0.5 : Math.fround(0.013 + j * 0.0007)));
        const run = (fused: boolean) =>
          tf.tidy(() => {
            const args = [tf.tensor(acc, shape), tf.tensor1d(bias), tf.tensor1d(mult), zp, lo, hi] as const;
            return (fused ? requantize(...args) : STOCK_QAT_OPS.requantize(...args)).dataSync() as Float32Array;
          });
        await useBackend('cpu');
        const ref = run(false);
        // Ties: channel 1's multiplier is 0.5 and odd sums make x.5.
        expect(ref.some((v, i) => i % c === 1 && Number.isInteger(v) && Math.abs((acc[i] + bias[1]) * 0.5) % 1 === 0.5)).toBe(c > 1);
        for (const backend of ['wasm', 'cpu'] as const) {
          await useBackend(backend);
          const got = run(true);
          // Object.is: +0 and -0 differ, as they would after the next layer's sums.
          expect(
            got.findIndex((v, i) => !Object.is(v, ref[i])),
            `${backend} ${shape}`,
          ).toBe(-1);
          const profile = await tf.profile(() => tf.tidy(() => requantize(tf.tensor(acc, shape), tf.tensor1d(bias), tf.tensor1d(mult), zp, lo, hi)));
          expect(profile.kernelNames, backend).toEqual(['QatRequantize']);
        }
      }
    });

    test("qlinearAdd (the int8 graph's residual add) is ONNX Runtime's QLinearAdd on uint8, in one kernel", async () => {
      // The quantizations, each on two inputs: every a against 16 values of b, 0 included, and 105
      // elements (the SIMD loop's scalar tail).
      const quants = [
        // Realistic scales and zero points.
        [
          { scale: 0.031, zeroPoint: 100 },
          { scale: 0.027, zeroPoint: 128 },
          { scale: 0.04, zeroPoint: 120 },
        ],
        // rA = 0.5 exactly: every odd a lands on a tie, and with the output's zero point 0 some on
        // -0.5, whose rounding is a zero that must come out +0, as a uint8 value's would.
        [
          { scale: 0.0625, zeroPoint: 128 },
          { scale: 0.125, zeroPoint: 0 },
          { scale: 0.125, zeroPoint: 0 },
        ],
        // A narrow output range: many sums clamp at 0 and 255.
        [
          { scale: 0.05, zeroPoint: 10 },
          { scale: 0.05, zeroPoint: 250 },
          { scale: 0.01, zeroPoint: 128 },
        ],
      ];
      const inputs = [
        { shape: [2, 8, 16, 16], a: (i: number) => i % 256, b: (i: number) => (Math.floor(i / 256) * 53) % 256 },
        { shape: [1, 3, 5, 7], a: (i: number) => (i * 127) % 256, b: (i: number) => (i * 53) % 256 },
      ];
      for (const [{ shape, a, b }, [aQuant, bQuant, outQuant]] of inputs.flatMap((inp) => quants.map((q) => [inp, q] as const))) {
        const n = size(shape);
        const qa = Uint8Array.from({ length: n }, (_, i) => a(i));
        const qb = Uint8Array.from({ length: n }, (_, i) => b(i));
        const want = qlinearAddU8(qa, aQuant, qb, bQuant, outQuant, new Uint8Array(n));
        const centered = (q: Uint8Array, zp: number) => Float32Array.from(q, (v) => v - zp);
        const run = (op: typeof qlinearAdd) =>
          tf.tidy(() =>
            op(tf.tensor(centered(qa, aQuant.zeroPoint), shape), aQuant, tf.tensor(centered(qb, bQuant.zeroPoint), shape), bQuant, outQuant).dataSync(),
          );
        for (const backend of ['wasm', 'cpu'] as const) {
          await useBackend(backend);
          for (const [name, op] of [
            ['fused', qlinearAdd],
            ['stock', (...args: Parameters<typeof qlinearAdd>) => STOCK_QAT_OPS.qlinearAdd(...args)],
          ] as const) {
            const got = run(op);
            expect(
              got.findIndex((v, i) => !Object.is(v, want[i] - outQuant.zeroPoint + 0)),
              `${name} ${backend} ${shape} ${JSON.stringify(outQuant)}`,
            ).toBe(-1);
          }
          const profile = await tf.profile(() => tf.tidy(() => run(qlinearAdd)));
          expect(profile.kernelNames, backend).toEqual(['QatQLinearAdd']);
        }
      }
    });

    test('relu6 gradient (replaced by a fused kernel on wasm and cpu) equals the stock mask', async () => {
      for (const backend of ['wasm', 'cpu'] as const) {
        await useBackend(backend);
        const x = tf.tensor1d([-1, 0, 1e-7, 3, 6, 6.0001, 100, -0.5]);
        const dy = tf.tensor1d([1, 2, 3, 4, 5, 6, 7, 8]);
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.relu6(t), dy)))(x);
        expect(Array.from(g.dataSync())).toEqual([0, 0, 3, 4, 5, 0, 0, 0]);
        tf.dispose([x, dy, g]);
      }
    });

    // As numbers: -0 and +0 are one value here (a masked gradient's zero takes dy's sign or not).
    const numbers = (a: Float32Array) => Array.from(a, (v) => v + 0);

    test('fakeQuantRelu6 equals fakeQuantAct(relu6(x)), values and gradient, without running ReLU6', async () => {
      // A ReLU6 point's grid (actQParams with relu6): zero point 0, top 255 * scale <= 6.
      const { scale, zeroPoint } = actQParams(-2, 4.3, true);
      expect(zeroPoint).toBe(0);
      const top = Math.fround(255 * scale);
      const n = 4 * 5 * 6 * 7;
      // Random values over [-8, 8] plus the edges: 0, -0, the grid top, just above it, 6 and above.
      const xv = randomValues(n, 83).map((v) => v * 8);
      xv.set([0, -0, top, Math.fround(top * 1.0000001), 6, 6.5, 1e-30, -1e-30, 100, -100]);
      const dyv = randomValues(n, 84);
      for (const backend of ['wasm', 'cpu'] as const) {
        await useBackend(backend);
        const before = tf.memory().numTensors;
        const [y, g, yRef, gRef] = tf.tidy(() => {
          const x = tf.tensor1d(xv);
          const dy = tf.tensor1d(dyv);
          const grad = (op: (t: tf.Tensor) => tf.Tensor) => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(op(t), dy)))(x);
          const fused = (t: tf.Tensor) => fakeQuantRelu6(t, scale);
          const composite = (t: tf.Tensor) => fakeQuantAct(tf.relu6(t), scale, 0);
          return [fused(x), grad(fused), composite(x), grad(composite)].map((t) => t.dataSync() as Float32Array);
        });
        expect(tf.memory().numTensors).toBe(before);
        expect(numbers(y)).toEqual(numbers(yRef));
        expect(numbers(g)).toEqual(numbers(gRef));
        // The composite's gradient by hand: dy where 0 < x <= top.
        expect(numbers(g)).toEqual(Array.from(dyv).map((d, i) => (xv[i] > 0 && xv[i] <= top ? d : 0)));
        // One kernel forward, one backward: no Relu6 and no Relu6 gradient.
        const profile = await tf.profile(() => tf.grad((t: tf.Tensor) => tf.sum(fakeQuantRelu6(t, scale)))(tf.tensor1d(xv)));
        expect(profile.kernelNames).not.toContain('Relu6');
        expect(profile.kernelNames).not.toContain('QatRelu6Grad');
        report.push(`fakeQuantRelu6  ${backend.padEnd(4)} values and gradient equal fakeQuantAct(relu6(x))`);
      }
    });

    test('fakeQuantRelu6 on a grid reaching past 6 takes ReLU6 and the fake quant as two ops', async () => {
      for (const backend of ['wasm', 'cpu'] as const) {
        await useBackend(backend);
        const x = tf.tensor1d([-1, 3, 6.2, 7]);
        const y = fakeQuantRelu6(x, 8 / 255);
        expect(numbers(y.dataSync() as Float32Array)).toEqual(numbers(fakeQuantAct(tf.relu6(x), 8 / 255, 0).dataSync() as Float32Array));
        expect(y.dataSync()[3]).toBeCloseTo(6, 1);
        tf.dispose([x, y]);
      }
    });

    for (const [shape, axis] of [
      [[3, 3, 5, 7], 3],
      [[3, 3, 13, 1], 2],
      [[17, 10], 1],
      [[3, 3, 6, 8], 3],
      [[3, 3, 12, 1], 2],
      [[24, 16], 1],
      [[1, 1, 40, 12], 3],
    ] as const) {
      test(`fakeQuantWeight ${shape} axis ${axis} equals the stock per-channel formulation, identity gradient`, async () => {
        const wv = randomValues(size([...shape]), 91).map((v, i) => v * (1 + (i % 5)));
        await useBackend('cpu');
        const ref = tf.tidy(() => {
          const w = tf.tensor(wv, [...shape]);
          const axes = shape.map((_, i) => i).filter((i) => i !== axis);
          const s = tf.div(tf.maximum(tf.max(tf.abs(w), axes), 1e-8 * 127), 127);
          const sb = tf.reshape(
            s,
            shape.map((d, i) => (i === axis ? d : 1)),
          );
          return tf.mul(tf.clipByValue(tf.round(tf.div(w, sb)), -127, 127), sb).dataSync() as Float32Array;
        });
        for (const backend of ['wasm', 'cpu'] as const) {
          await useBackend(backend);
          const [y, g] = tf
            .tidy(() => {
              const w = tf.tensor(wv, [...shape]);
              const r = tf.tensor(randomValues(wv.length, 92), [...shape]);
              const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(fakeQuantWeight(t, axis), r)))(w);
              return [fakeQuantWeight(w, axis).dataSync(), grad.dataSync(), r.dataSync()] as Float32Array[];
            })
            .slice(0, 2)
            .concat([]);
          expect(maxRelError(y, ref)).toBe(0);
          expect(maxRelError(g, randomValues(wv.length, 92))).toBe(0);
        }
      });
    }
  });

describe('UnsortedSegmentSum on wasm (the gradient of gather)', () => {
  test('by hand, and tf.gather gradients equal cpu', async () => {
    await useBackend('wasm');
    const x = tf.tensor2d([
      [1, 2],
      [3, 4],
      [5, 6],
      [7, 8],
    ]);
    const s = tf.unsortedSegmentSum(x, tf.tensor1d([2, 0, 2, 9], 'int32'), 3);
    // id 9 is out of range and dropped; segment 1 gets nothing.
    expect(Array.from(s.dataSync())).toEqual([3, 4, 0, 0, 6, 8]);
    tf.dispose([x, s]);
    const grads = async (backend: 'cpu' | 'wasm') => {
      await useBackend(backend);
      return tf.tidy(() => {
        const t = tf.tensor3d(randomValues(5 * 3 * 4, 7), [5, 3, 4]);
        const r = tf.tensor3d(randomValues(6 * 3 * 4, 8), [6, 3, 4]);
        const idx = tf.tensor1d([4, 0, 4, 2, 1, 4], 'int32');
        return tf
          .grad((v: tf.Tensor) => tf.sum(tf.mul(tf.gather(v, idx), r)))(t)
          .dataSync() as Float32Array;
      });
    };
    expect(maxRelError(await grads('wasm'), await grads('cpu'))).toBeLessThan(1e-6);
  });
});
