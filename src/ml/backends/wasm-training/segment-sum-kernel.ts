// UnsortedSegmentSum for 'wasm' (tfjs 4.22's wasm backend has none). It is the gradient of
// tf.gather, so without it any gather on a training path fails on wasm.
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { WasmTrainingError } from './errors.js';
import type { WasmBackendLike } from './heap.js';

function heapView(be: WasmBackendLike, t: TensorInfo): Float32Array | Int32Array {
  const { memoryOffset } = be.dataIdMap.get(t.dataId);
  const n = t.shape.reduce((a, b) => a * b, 1);
  return t.dtype === 'int32' ? new Int32Array(be.wasm.HEAPU8.buffer, memoryOffset, n) : new Float32Array(be.wasm.HEAPU8.buffer, memoryOffset, n);
}

function unsortedSegmentSum(args: { inputs: { x: TensorInfo; segmentIds: TensorInfo }; backend: unknown; attrs: { numSegments: number } }): TensorInfo {
  const be = args.backend as WasmBackendLike;
  const { x, segmentIds } = args.inputs;
  const { numSegments } = args.attrs;
  if ((x.dtype !== 'float32' && x.dtype !== 'int32') || segmentIds.dtype !== 'int32') {
    throw new WasmTrainingError('WASM_TRAINING_UNSUPPORTED', `UnsortedSegmentSum on wasm: x ${x.dtype}, segmentIds ${segmentIds.dtype}.`);
  }
  const n = segmentIds.shape.reduce((a, b) => a * b, 1);
  const size = x.shape.reduce((a, b) => a * b, 1);
  // segmentIds covers the leading dimensions of x; the rest is summed as a block.
  const inner = n === 0 ? 0 : size / n;
  const outShape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  const out = be.makeOutput(outShape, x.dtype);
  const xv = heapView(be, x);
  const ids = heapView(be, segmentIds) as Int32Array;
  const ov = heapView(be, out);
  ov.fill(0);
  for (let i = 0; i < n; i++) {
    const s = ids[i];
    // Out-of-range ids are dropped, as TensorFlow does.
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) ov[dst + j] += xv[src + j];
  }
  return out;
}

export const segmentSumKernelConfig: KernelConfig = {
  kernelName: 'UnsortedSegmentSum',
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSum as unknown as KernelFunc,
};
