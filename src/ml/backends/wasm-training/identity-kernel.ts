// A sharing Identity for 'wasm'. The stock kernel copies, and tfjs clones (through Identity) every
// tensor it saves for backprop, so training held two copies of every activation. Sharing the
// buffer (as the cpu backend's Identity does) is safe because tfjs never writes a tensor in place.
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from './heap.js';
import { stockKernel } from './wasm-calls.js';

function identity(args: { inputs: { x: TensorInfo }; backend: unknown }): TensorInfo {
  const { x } = args.inputs;
  if (x.dtype === 'string') return stockKernel('Identity').kernelFunc(args as never) as TensorInfo;
  (args.backend as WasmBackendLike).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

export const identityKernelConfig: KernelConfig = {
  kernelName: 'Identity',
  backendName: 'wasm',
  kernelFunc: identity as unknown as KernelFunc,
};
