// Min and Max over every element for 'wasm' (the activation-range observers take one of each per
// quantization point and step). The stock kernels reduce with a scalar compare-and-branch loop:
// 93 ms of a MobileNetV2 1.0/224/bs8 QAT step. Other reductions (some axes, other dtypes) go to the
// stock kernels.
import { util, type KernelConfig, type KernelFunc, type TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from './heap.js';
import { simdReduceAll } from './simd.js';
import { dispose, stockKernel } from './wasm-calls.js';

interface ReduceArgs {
  inputs: { x: TensorInfo };
  backend: unknown;
  attrs: { axis?: number | number[] | null; reductionIndices?: number | number[] | null; keepDims: boolean };
}

function reduceAll(name: 'Min' | 'Max'): KernelFunc {
  return ((args: ReduceArgs): TensorInfo => {
    const be = args.backend as WasmBackendLike;
    const { x } = args.inputs;
    // tfjs names the attribute reductionIndices for Max and axis for Min.
    const axis = name === 'Max' ? args.attrs.reductionIndices : args.attrs.axis;
    const n = util.sizeFromShape(x.shape);
    const everyAxis = new Set(util.parseAxisParam(axis ?? x.shape.map((_, i) => i), x.shape)).size === x.shape.length;
    if (x.dtype === 'float32' && n > 0 && everyAxis) {
      const out = be.makeOutput(args.attrs.keepDims ? x.shape.map(() => 1) : [], 'float32');
      if (simdReduceAll(be, x, n, name === 'Max', out)) return out;
      dispose(be, out);
    }
    return stockKernel(name).kernelFunc(args as never) as TensorInfo;
  }) as unknown as KernelFunc;
}

export const reduceKernelConfigs: KernelConfig[] = [
  { kernelName: 'Max', backendName: 'wasm', kernelFunc: reduceAll('Max') },
  { kernelName: 'Min', backendName: 'wasm', kernelFunc: reduceAll('Min') },
];
