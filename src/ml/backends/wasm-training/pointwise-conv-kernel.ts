// Conv2D for 'wasm' with 1x1 filters (MobileNetV2's expansions and projections: about 60% of its
// multiply-adds) as one matrix product in the SIMD module, whose register tiles use fused
// multiply-adds where XNNPACK's wasm build (mul, then add) does not. Every other convolution goes
// to the stock kernel.
import type { backend_util, KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { convGeometry, isPointwise, type ConvGeometry } from './conv-geometry.js';
import type { WasmBackendLike } from './heap.js';
import { simdGemm } from './simd.js';
import { dispose, stockKernel } from './wasm-calls.js';

interface Conv2DAttrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
  dataFormat?: string;
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

const ones = (v: number | [number, number] | undefined): boolean => v == null || (typeof v === 'number' ? v === 1 : v[0] === 1 && v[1] === 1);

/**
 * The geometry of a non-empty float32 NHWC convolution the gradient kernels' geometry calls
 * pointwise, else null. Dilation and layout are checked first: convGeometry refuses what the
 * stock kernel takes.
 */
function pointwiseGeometry(x: TensorInfo, filter: TensorInfo, a: Conv2DAttrs): ConvGeometry | null {
  if (x.dtype !== 'float32' || filter.dtype !== 'float32' || x.shape.length !== 4 || filter.shape.length !== 4) return null;
  if (!ones(a.dilations) || !(a.dataFormat == null || a.dataFormat === 'NHWC' || a.dataFormat === 'channelsLast')) return null;
  if (![...x.shape, filter.shape[3]].every((d) => d > 0)) return null;
  const g = convGeometry('Conv2D', x.shape, filter.shape, a.strides, a.pad, a.dimRoundingMode, false, 1, a.dataFormat);
  return isPointwise(g) ? g : null;
}

function conv2D(args: { inputs: { x: TensorInfo; filter: TensorInfo }; backend: unknown; attrs: Conv2DAttrs }): TensorInfo {
  const be = args.backend as WasmBackendLike;
  const { x, filter } = args.inputs;
  const g = pointwiseGeometry(x, filter, args.attrs);
  if (g) {
    const out = be.makeOutput([g.batch, g.outH, g.outW, g.outC], 'float32');
    if (simdGemm(be, x, filter, g.batch * g.outH * g.outW, g.inC, g.outC, out, false)) return out;
    dispose(be, out);
  }
  return stockKernel('Conv2D').kernelFunc(args as never) as TensorInfo;
}

export const pointwiseConvKernelConfig: KernelConfig = {
  kernelName: 'Conv2D',
  backendName: 'wasm',
  kernelFunc: conv2D as unknown as KernelFunc,
};
