// Gradient checks: each kernel registered for 'wasm' against tfjs's cpu backend, on shapes that hit
// the edge cases (odd spatial sizes, strides 1 and 2, channels not multiples of 4, every padding).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { setSimdEnabled } from '../../../src/ml/backends/wasm-training/simd.js';
import { conv2dFilterGrad } from '../../../src/ml/backends/wasm-training/conv-grad-math.js';
import { convGeometry } from '../../../src/ml/backends/wasm-training/conv-geometry.js';
import { backend_util } from '@tensorflow/tfjs-core';
import { maxRelError, randomValues, runKernelOn, tf, useBackend } from './helpers.js';

type Pad = 'same' | 'valid' | backend_util.ExplicitPadding;

interface Case {
  name: string;
  x: [number, number, number, number];
  k: number;
  cOut: number; // conv only; depthwise uses multiplier 1
  stride: number;
  pad: Pad;
}

const explicit: backend_util.ExplicitPadding = [
  [0, 0],
  [1, 0],
  [0, 2],
  [0, 0],
];

const cases: Case[] = [
  { name: '3x3 s1 same, odd 7x7, C=5', x: [2, 7, 7, 5], k: 3, cOut: 7, stride: 1, pad: 'same' },
  { name: '3x3 s2 same, odd 9x9, C=3', x: [3, 9, 9, 3], k: 3, cOut: 6, stride: 2, pad: 'same' },
  { name: '3x3 s2 valid, 8x8, C=6', x: [2, 8, 8, 6], k: 3, cOut: 5, stride: 2, pad: 'valid' },
  { name: '3x3 s1 valid, 5x6, C=1', x: [1, 5, 6, 1], k: 3, cOut: 3, stride: 1, pad: 'valid' },
  { name: '1x1 s1, 5x5, C=13', x: [4, 5, 5, 13], k: 1, cOut: 11, stride: 1, pad: 'valid' },
  { name: '1x1 s2 same, 7x7, C=9', x: [2, 7, 7, 9], k: 1, cOut: 10, stride: 2, pad: 'same' },
  { name: '3x3 s2 explicit pads, 7x6, C=7', x: [2, 7, 6, 7], k: 3, cOut: 4, stride: 2, pad: explicit },
  { name: '1x1 s1 same, 9x7, C=24 -> 144', x: [3, 9, 7, 24], k: 1, cOut: 144, stride: 1, pad: 'same' },
  { name: '1x1 s1, 3x3, C=144 -> 24', x: [5, 3, 3, 144], k: 1, cOut: 24, stride: 1, pad: 'valid' },
  { name: '3x3 s1 numeric pad 1, 7x7, C=6', x: [2, 7, 7, 6], k: 3, cOut: 5, stride: 1, pad: 1 as unknown as Pad },
  { name: '3x3 s2 numeric pad 1, 9x9, C=3', x: [2, 9, 9, 3], k: 3, cOut: 8, stride: 2, pad: 1 as unknown as Pad },
  { name: '3x3 s2 same, 9x9, C=8 (SIMD path)', x: [3, 9, 9, 8], k: 3, cOut: 4, stride: 2, pad: 'same' },
  { name: '3x3 s1 numeric pad 1, 7x5, C=12 (SIMD)', x: [2, 7, 5, 12], k: 3, cOut: 4, stride: 1, pad: 1 as unknown as Pad },
  { name: '3x3 s2 explicit pads, 8x8, C=16 (SIMD)', x: [2, 8, 8, 16], k: 3, cOut: 4, stride: 2, pad: explicit },
  // rows x max(channels) above the chunk size of the filter-gradient matmul: several chunks.
  { name: '1x1 s1, 2x25x23, C=16 -> 600 (chunked)', x: [2, 25, 23, 16], k: 1, cOut: 600, stride: 1, pad: 'valid' },
  { name: '1x1 s1, 2x25x23, C=600 -> 12 (chunked)', x: [2, 25, 23, 600], k: 1, cOut: 12, stride: 1, pad: 'valid' },
  { name: '5x3-ish 5x5 s1 same, 6x6, C=2', x: [1, 6, 6, 2], k: 5, cOut: 3, stride: 1, pad: 'same' },
  // The SIMD filter-gradient product (gram_xty): 4x8 register tiles, a 4-wide last tile when
  // outC % 8 == 4, im2col columns padded from 27 to 28, row blocks with a short last block.
  { name: '3x3 s2 same, 2x17x15, C=3 -> 32 (stem-like)', x: [2, 17, 15, 3], k: 3, cOut: 32, stride: 2, pad: 'same' },
  { name: '1x1 s1, 3x11x9, C=20 -> 12 (4-wide tile)', x: [3, 11, 9, 20], k: 1, cOut: 12, stride: 1, pad: 'valid' },
  { name: '1x1 s1, 1x1x7, C=4 -> 4 (7 rows)', x: [1, 1, 7, 4], k: 1, cOut: 4, stride: 1, pad: 'valid' },
  { name: '1x1 s1, 2x3x3, C=320 -> 1280 (7x7-head-like)', x: [2, 3, 3, 320], k: 1, cOut: 1280, stride: 1, pad: 'valid' },
  // More than 2048 rows: gram_xty's f64 totals over several packed blocks (up to 2048 rows are
  // one block, stored as f32 directly), also with im2col's padded columns (27 -> 28).
  { name: '1x1 s1, 3x29x27, C=8 -> 12 (3 row blocks)', x: [3, 29, 27, 8], k: 1, cOut: 12, stride: 1, pad: 'valid' },
  { name: '3x3 s1 same, 2x35x33, C=3 -> 8 (3 row blocks)', x: [2, 35, 33, 3], k: 3, cOut: 8, stride: 1, pad: 'same' },
  // The depthwise filter gradient's register path covers the output pixels whose 3x3 window is
  // inside the image: all of them ('valid'), a box with borders on every side (pad 1, stride 1
  // and 2, even and odd sizes), none (2x2 input).
  { name: '3x3 s1 valid, 2x7x9, C=20 (dw box = all)', x: [2, 7, 9, 20], k: 3, cOut: 4, stride: 1, pad: 'valid' },
  { name: '3x3 s2 numeric pad 1, 2x10x12, C=4 (dw box)', x: [2, 10, 12, 4], k: 3, cOut: 8, stride: 2, pad: 1 as unknown as Pad },
  { name: '3x3 s1 numeric pad 1, 3x6x5, C=24 (dw box)', x: [3, 6, 5, 24], k: 3, cOut: 8, stride: 1, pad: 1 as unknown as Pad },
  { name: '3x3 s1 numeric pad 1, 2x2x2, C=8 (dw box empty)', x: [2, 2, 2, 8], k: 3, cOut: 4, stride: 1, pad: 1 as unknown as Pad },
  // Stride above the filter size: the depthwise input gradient's pixels that no tap reads are zero.
  { name: '1x1 s2 valid, 2x7x7, C=8 (pixels no tap reads)', x: [2, 7, 7, 8], k: 1, cOut: 4, stride: 2, pad: 'valid' },
];

function outShape(c: Case, depthwise: boolean): number[] {
  const cOut = depthwise ? c.x[3] : c.cOut;
  const info = backend_util.computeConv2DInfo(c.x, [c.k, c.k, c.x[3], depthwise ? 1 : cOut], c.stride, 1, c.pad, undefined, depthwise);
  return [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
}

const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);
const errors: string[] = [];

async function compare(kernel: string, inputs: Record<string, { values: Float32Array; shape: number[] }>, attrs: Record<string, unknown>, label: string) {
  const ref = await runKernelOn('cpu', kernel, inputs, attrs);
  const got = await runKernelOn('wasm', kernel, inputs, attrs);
  expect(got.shape).toEqual(ref.shape);
  const err = maxRelError(got.values, ref.values);
  errors.push(`${kernel.padEnd(38)} ${label.padEnd(34)} max rel err ${err.toExponential(2)}`);
  expect(err).toBeLessThan(1e-5);
  return err;
}

for (const simd of [true, false])
  describe(`wasm convolution kernels match the cpu backend (${simd ? 'SIMD module' : 'plain JS'} paths)`, () => {
    beforeAll(() => setSimdEnabled(simd));
    afterAll(() => {
      setSimdEnabled(true);
      // The figures the issue asks to report.
      console.log(`${simd ? 'SIMD' : 'JS'} paths:\n` + errors.splice(0).join('\n'));
    });

    for (const c of cases) {
      test(`Conv2DBackpropFilter ${c.name}`, async () => {
        const dyShape = outShape(c, false);
        // 30% zeros in x: exercises the zero-skip path the ReLU activations take.
        const inputs = { x: { values: randomValues(size(c.x), 11, 0.3), shape: c.x }, dy: { values: randomValues(size(dyShape), 12), shape: dyShape } };
        await compare('Conv2DBackpropFilter', inputs, { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', filterShape: [c.k, c.k, c.x[3], c.cOut] }, c.name);
      });

      test(`DepthwiseConv2dNativeBackpropFilter ${c.name}`, async () => {
        const dyShape = outShape(c, true);
        const inputs = { x: { values: randomValues(size(c.x), 21), shape: c.x }, dy: { values: randomValues(size(dyShape), 22), shape: dyShape } };
        await compare(
          'DepthwiseConv2dNativeBackpropFilter',
          inputs,
          { strides: c.stride, pad: c.pad, dilations: 1, filterShape: [c.k, c.k, c.x[3], 1] },
          c.name,
        );
      });

      // Conv2D is replaced for 1x1 filters (the SIMD product with fused multiply-adds; stock
      // otherwise): the 1x1 cases cover 4x8 and 4-wide tiles, short last rows and row blocks.
      test(`Conv2D ${c.name}`, async () => {
        const fShape = [c.k, c.k, c.x[3], c.cOut];
        const inputs = { x: { values: randomValues(size(c.x), 71, 0.3), shape: c.x }, filter: { values: randomValues(size(fShape), 72), shape: fShape } };
        await compare('Conv2D', inputs, { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', dilations: 1 }, c.name);
      });

      test(`Conv2DBackpropInput ${c.name}`, async () => {
        const dyShape = outShape(c, false);
        const fShape = [c.k, c.k, c.x[3], c.cOut];
        const inputs = { dy: { values: randomValues(size(dyShape), 61), shape: dyShape }, filter: { values: randomValues(size(fShape), 62), shape: fShape } };
        await compare('Conv2DBackpropInput', inputs, { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', inputShape: c.x }, c.name);
      });

      test(`DepthwiseConv2dNativeBackpropInput ${c.name}`, async () => {
        const dyShape = outShape(c, true);
        const fShape = [c.k, c.k, c.x[3], 1];
        const inputs = { dy: { values: randomValues(size(dyShape), 31), shape: dyShape }, filter: { values: randomValues(size(fShape), 32), shape: fShape } };
        await compare('DepthwiseConv2dNativeBackpropInput', inputs, { strides: c.stride, pad: c.pad, dilations: 1, inputShape: c.x }, c.name);
      });
    }

    test('depthwise channel multiplier 2 is handled too', async () => {
      const x = [2, 5, 5, 3];
      const dyShape = [2, 3, 3, 6];
      const inputs = { x: { values: randomValues(size(x), 41), shape: x }, dy: { values: randomValues(size(dyShape), 42), shape: dyShape } };
      await compare(
        'DepthwiseConv2dNativeBackpropFilter',
        inputs,
        { strides: 2, pad: 'same', dilations: 1, filterShape: [3, 3, 3, 2] },
        'multiplier 2, s2 same',
      );
      const f = { values: randomValues(3 * 3 * 3 * 2, 43), shape: [3, 3, 3, 2] };
      await compare(
        'DepthwiseConv2dNativeBackpropInput',
        { dy: inputs.dy, filter: f },
        { strides: 2, pad: 'same', dilations: 1, inputShape: x },
        'multiplier 2, s2 same',
      );
    });

    test('end to end: tf.grads of conv2d and depthwiseConv2d on wasm equal cpu', async () => {
      const x = randomValues(2 * 9 * 9 * 5, 51);
      const w = randomValues(3 * 3 * 5 * 6, 52);
      const dw = randomValues(3 * 3 * 6 * 1, 53);
      const run = async (b: 'cpu' | 'wasm') => {
        await useBackend(b);
        return tf.tidy(() => {
          const f = (xt: tf.Tensor, wt: tf.Tensor, dwt: tf.Tensor) => {
            const h = tf.relu6(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 1, 'same'));
            return tf.sum(tf.square(tf.depthwiseConv2d(h, dwt as tf.Tensor4D, 2, 'same')));
          };
          const g = tf.grads(f)([tf.tensor4d(x, [2, 9, 9, 5]), tf.tensor4d(w, [3, 3, 5, 6]), tf.tensor4d(dw, [3, 3, 6, 1])]);
          return g.map((t) => t.dataSync() as Float32Array);
        });
      };
      const ref = await run('cpu');
      const got = await run('wasm');
      for (let i = 0; i < 3; i++) {
        const err = maxRelError(got[i], ref[i]);
        errors.push(`${'tf.grads conv2d->relu6->depthwise'.padEnd(38)} ${['dx', 'dW', 'dWdepthwise'][i].padEnd(34)} max rel err ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-4);
      }
    });

    test('Conv2D with a 1x1 filter and dilation 2 (stock kernel) still matches', async () => {
      const x = [2, 5, 5, 8];
      const inputs = { x: { values: randomValues(size(x), 81), shape: x }, filter: { values: randomValues(8 * 8, 82), shape: [1, 1, 8, 8] } };
      await compare('Conv2D', inputs, { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 2 }, '1x1 dilation 2');
    });

    test('dilation other than 1 is refused with a clear error code', async () => {
      await useBackend('wasm');
      const x = tf.zeros([1, 5, 5, 2]);
      const dy = tf.zeros([1, 5, 5, 2]);
      expect(() =>
        tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy }, { strides: 1, pad: 'same', dilations: 2, filterShape: [3, 3, 2, 1] }),
      ).toThrow(expect.objectContaining({ code: 'WASM_TRAINING_UNSUPPORTED' }));
      tf.dispose([x, dy]);
    });
  });

// The direct-loop filter gradient only runs for convolutions whose im2col buffer would exceed 16M
// elements; check it on small shapes directly against the cpu kernel.
describe('plain-loop Conv2DBackpropFilter (used beyond the im2col size limit)', () => {
  for (const c of cases.slice(0, 8)) {
    test(c.name, async () => {
      const dyShape = outShape(c, false);
      const x = randomValues(size(c.x), 11, 0.3);
      const dy = randomValues(size(dyShape), 12);
      const filterShape = [c.k, c.k, c.x[3], c.cOut];
      const ref = await runKernelOn(
        'cpu',
        'Conv2DBackpropFilter',
        { x: { values: x, shape: c.x }, dy: { values: dy, shape: dyShape } },
        { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', filterShape },
      );
      const out = new Float32Array(size(filterShape));
      conv2dFilterGrad(x, dy, convGeometry('test', c.x, filterShape, c.stride, c.pad, undefined, false), out);
      expect(maxRelError(out, ref.values)).toBeLessThan(1e-6);
    });
  }
});
