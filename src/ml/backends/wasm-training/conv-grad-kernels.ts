// KernelConfigs for the three convolution gradients tfjs-backend-wasm lacks.
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { backend_util } from '@tensorflow/tfjs-core';
import { convGeometry, isPointwise, type ConvGeometry } from './conv-geometry.js';
import { conv2dFilterGrad, depthwiseFilterGrad, depthwiseInputGrad } from './conv-grad-math.js';
import { WasmTrainingError } from './errors.js';
import { f32View, type WasmBackendLike } from './heap.js';
import { simdDepthwiseFilterGrad, simdDepthwiseInputGrad, simdGemm, simdGramXtY, simdIm2col } from './simd.js';
import { dispose, gramXtY, matMul, reshaped, stockKernel, transpose2d } from './wasm-calls.js';

type Pad = 'valid' | 'same' | number | backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

function assertFloat32(op: string, ...ts: TensorInfo[]): void {
  for (const t of ts) {
    if (t.dtype !== 'float32') {
      throw new WasmTrainingError('WASM_TRAINING_UNSUPPORTED', `${op} on wasm: only float32 is supported, got ${t.dtype}.`);
    }
  }
}

interface KernelArgs {
  inputs: Record<string, TensorInfo>;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

function conv2DBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const be = backend as WasmBackendLike;
  const { x, dy } = inputs;
  const a = attrs as { strides: number | [number, number]; pad: Pad; dataFormat?: string; dimRoundingMode?: Rounding; filterShape: number[] };
  assertFloat32('Conv2DBackpropFilter', x, dy);
  const g = convGeometry('Conv2DBackpropFilter', x.shape, a.filterShape, a.strides, a.pad, a.dimRoundingMode, false, 1, a.dataFormat);
  const rows = g.batch * g.outH * g.outW;
  if (isPointwise(g)) {
    const out = be.makeOutput([1, 1, g.inC, g.outC], 'float32');
    if (simdGramXtY(be, x, dy, rows, g.inC, g.outC, out)) return out;
    dispose(be, out);
    const dw = gramXtY(be, reshaped(x, [rows, g.inC]), reshaped(dy, [rows, g.outC]));
    dw.shape = [1, 1, g.inC, g.outC];
    return dw;
  }
  const k = g.kH * g.kW * g.inC;
  // Patch rows padded to a multiple of 4 columns (zeros) so the SIMD product takes them.
  const kp = (k + 3) & ~3;
  if (rows * kp <= MAX_PATCH_ELEMENTS) {
    // im2col: patches [rows, kh*kw*ci], then dW = patches^T dY as one matrix product. Both
    // im2cols leave padding taps and the extra columns to this zero fill.
    const patches = be.makeOutput([rows, kp], 'float32');
    f32View(be, patches).fill(0);
    if (!simdIm2col(be, x, g, kp, patches)) im2col(f32View(be, x), g, kp, f32View(be, patches));
    const out = be.makeOutput([g.kH, g.kW, g.inC, g.outC], 'float32');
    if (simdGramXtY(be, patches, dy, rows, kp, g.outC, out, k)) {
      dispose(be, patches);
      return out;
    }
    dispose(be, out);
    const dw = gramXtY(be, reshaped(patches, [rows, kp]), reshaped(dy, [rows, g.outC]));
    dispose(be, patches);
    // Rows k.. of the product belong to the zero padding columns.
    const res = be.makeOutput([g.kH, g.kW, g.inC, g.outC], 'float32');
    f32View(be, res).set(f32View(be, dw).subarray(0, k * g.outC));
    dispose(be, dw);
    return res;
  }
  const out = be.makeOutput([g.kH, g.kW, g.inC, g.outC], 'float32');
  conv2dFilterGrad(f32View(be, x), f32View(be, dy), g, f32View(be, out));
  return out;
}

/** Largest im2col buffer (elements) built for a filter gradient; beyond it the direct loop runs. */
const MAX_PATCH_ELEMENTS = 16 * 1024 * 1024;

/**
 * Patches of x (the JS path of simd.ts simdIm2col): row (b, oy, ox), column (kh, kw, c), rows `k`
 * floats apart (k >= kh*kw*ci); taps in the padding and the extra columns are left as they are
 * (the caller zeroes `out`).
 */
function im2col(x: Float32Array, g: ConvGeometry, k: number, out: Float32Array): void {
  const { batch, inH, inW, inC, outH, outW, kH, kW, strideH, strideW, padTop, padLeft } = g;
  let row = 0;
  for (let b = 0; b < batch; b++) {
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++, row += k) {
        for (let kh = 0; kh < kH; kh++) {
          const iy = oy * strideH + kh - padTop;
          if (iy < 0 || iy >= inH) continue;
          for (let kw = 0; kw < kW; kw++) {
            const ix = ox * strideW + kw - padLeft;
            if (ix < 0 || ix >= inW) continue;
            const src = ((b * inH + iy) * inW + ix) * inC;
            const dst = row + (kh * kW + kw) * inC;
            for (let c = 0; c < inC; c++) out[dst + c] = x[src + c];
          }
        }
      }
    }
  }
}

function conv2DBackpropInput(args: KernelArgs): TensorInfo {
  const be = args.backend as WasmBackendLike;
  const { dy, filter } = args.inputs;
  const a = args.attrs as { strides: number | [number, number]; pad: Pad; dataFormat?: string; dimRoundingMode?: Rounding; inputShape: number[] };
  const g = convGeometry('Conv2DBackpropInput', a.inputShape, filter.shape, a.strides, a.pad, a.dimRoundingMode, false, 1, a.dataFormat);
  if (dy.dtype !== 'float32' || filter.dtype !== 'float32' || !isPointwise(g)) {
    return stockKernel('Conv2DBackpropInput').kernelFunc(args as never) as TensorInfo;
  }
  // dX[n, ci] = dY[n, co] W^T[co, ci]: the SIMD product reads W^T in place; XNNPACK needs it
  // transposed (the filter is small), dY stays A.
  const rows = g.batch * g.inH * g.inW;
  const out = be.makeOutput([g.batch, g.inH, g.inW, g.inC], 'float32');
  if (simdGemm(be, dy, filter, rows, g.outC, g.inC, out, true)) return out;
  dispose(be, out);
  const wt = transpose2d(be, reshaped(filter, [g.inC, g.outC]));
  const dx = matMul(be, reshaped(dy, [rows, g.outC]), wt);
  dispose(be, wt);
  dx.shape = [g.batch, g.inH, g.inW, g.inC];
  return dx;
}

function depthwiseBackpropFilter({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const be = backend as WasmBackendLike;
  const { x, dy } = inputs;
  const a = attrs as { strides: number | [number, number]; pad: Pad; dilations?: number | [number, number]; dimRoundingMode?: Rounding; filterShape: number[] };
  assertFloat32('DepthwiseConv2dNativeBackpropFilter', x, dy);
  const g = convGeometry('DepthwiseConv2dNativeBackpropFilter', x.shape, a.filterShape, a.strides, a.pad, a.dimRoundingMode, true, a.dilations);
  const out = be.makeOutput([g.kH, g.kW, g.inC, g.mult], 'float32');
  if (simdDepthwiseFilterGrad(be, x, dy, g, out)) return out;
  depthwiseFilterGrad(f32View(be, x), f32View(be, dy), g, f32View(be, out));
  return out;
}

function depthwiseBackpropInput({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const be = backend as WasmBackendLike;
  const { dy, filter } = inputs;
  const a = attrs as { strides: number | [number, number]; pad: Pad; dilations?: number | [number, number]; dimRoundingMode?: Rounding; inputShape: number[] };
  assertFloat32('DepthwiseConv2dNativeBackpropInput', dy, filter);
  const g = convGeometry('DepthwiseConv2dNativeBackpropInput', a.inputShape, filter.shape, a.strides, a.pad, a.dimRoundingMode, true, a.dilations);
  const out = be.makeOutput([g.batch, g.inH, g.inW, g.inC], 'float32');
  if (simdDepthwiseInputGrad(be, dy, filter, g, out)) return out;
  depthwiseInputGrad(f32View(be, dy), f32View(be, filter), g, f32View(be, out));
  return out;
}

export const convGradKernelConfigs: KernelConfig[] = [
  { kernelName: 'Conv2DBackpropInput', backendName: 'wasm', kernelFunc: conv2DBackpropInput as unknown as KernelFunc },
  { kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter as unknown as KernelFunc },
  { kernelName: 'DepthwiseConv2dNativeBackpropFilter', backendName: 'wasm', kernelFunc: depthwiseBackpropFilter as unknown as KernelFunc },
  { kernelName: 'DepthwiseConv2dNativeBackpropInput', backendName: 'wasm', kernelFunc: depthwiseBackpropInput as unknown as KernelFunc },
];
