// Conv2D for 'wasm' with 1x1 filters (MobileNetV2's expansions and projections: about 60% of its
// multiply-adds) as one matrix product in the SIMD module, whose register tiles use fused
// multiply-adds where XNNPACK's wasm build (mul, then add) does not. Every other convolution goes
// to the stock kernel.
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from './heap.js';
import { simdGemm } from './simd.js';
import { dispose, stockKernel } from './wasm-calls.js';

interface Conv2DAttrs {
  strides: number | [number, number];
  pad: unknown;
  dataFormat?: string;
  dilations?: number | [number, number];
}

const ones = (v: number | [number, number] | undefined): boolean => v == null || (typeof v === 'number' ? v === 1 : v[0] === 1 && v[1] === 1);

/** A 1x1, stride 1, dilation 1, unpadded NHWC float32 convolution: a product over positions. */
export function isPointwiseConv(x: TensorInfo, filter: TensorInfo, a: Conv2DAttrs): boolean {
  const f = filter.shape;
  return (
    x.dtype === 'float32' &&
    filter.dtype === 'float32' &&
    x.shape.length === 4 &&
    f.length === 4 &&
    f[0] === 1 &&
    f[1] === 1 &&
    ones(a.strides) &&
    ones(a.dilations) &&
    (a.dataFormat == null || a.dataFormat === 'NHWC' || a.dataFormat === 'channelsLast') &&
    (a.pad === 'valid' || a.pad === 'same' || a.pad === 0) &&
    x.shape.every((d) => d > 0) &&
    f[3] > 0
  );
}

function conv2D(args: { inputs: { x: TensorInfo; filter: TensorInfo }; backend: unknown; attrs: Conv2DAttrs }): TensorInfo {
  const be = args.backend as WasmBackendLike;
  const { x, filter } = args.inputs;
  if (isPointwiseConv(x, filter, args.attrs)) {
    const [batch, h, w, inC] = x.shape;
    const outC = filter.shape[3];
    const out = be.makeOutput([batch, h, w, outC], 'float32');
    if (simdGemm(be, x, filter, batch * h * w, inC, outC, out, false)) return out;
    dispose(be, out);
  }
  return stockKernel('Conv2D').kernelFunc(args as never) as TensorInfo;
}

export const pointwiseConvKernelConfig: KernelConfig = {
  kernelName: 'Conv2D',
  backendName: 'wasm',
  kernelFunc: conv2D as unknown as KernelFunc,
};
