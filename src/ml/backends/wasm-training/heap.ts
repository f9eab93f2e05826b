// Access to the wasm backend's heap. These rely on tfjs-backend-wasm internals (dataIdMap, wasm
// module), which is why index.ts pins the tfjs version.
//
// Views of the heap go stale whenever the heap grows (any _malloc may grow it), so callers take
// views only after every output of a kernel has been allocated, and never keep them across calls.
import type { TensorInfo } from '@tensorflow/tfjs-core';

export interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: string;
  refCount: number;
}

export interface WasmModule {
  HEAPU8: Uint8Array;
  HEAPF32: Float32Array;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  cwrap(name: string, ret: string | null, args: string[]): (...a: unknown[]) => unknown;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
}

/** The subset of BackendWasm these kernels use. */
export interface WasmBackendLike {
  wasm: WasmModule;
  dataIdMap: { get(dataId: object): WasmTensorData; has(dataId: object): boolean };
  makeOutput(shape: number[], dtype: string, memoryOffset?: number): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  incRef(dataId: object): void;
}

/** A fresh Float32Array view over the tensor's bytes on the wasm heap. */
export function f32View(backend: WasmBackendLike, t: TensorInfo): Float32Array {
  const { memoryOffset } = backend.dataIdMap.get(t.dataId);
  let size = 1;
  for (const d of t.shape) size *= d;
  return new Float32Array(backend.wasm.HEAPU8.buffer, memoryOffset, size);
}

/** The backend's internal tensor id (the one its C++ kernels take). */
export function wasmId(backend: WasmBackendLike, t: TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).id;
}
