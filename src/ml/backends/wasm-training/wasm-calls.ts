// Calls into the stock wasm kernels (XNNPACK matmul, C++ transpose) from our kernels. The stock
// configs are captured before index.ts replaces any kernel, so a replacement can still fall back
// to the original.
import { getKernel, type KernelConfig, type TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from './heap.js';

const stock = new Map<string, KernelConfig>();

/** Records the stock 'wasm' kernel of that name (once; later calls keep the first). */
export function captureStockKernel(name: string): KernelConfig | undefined {
  if (!stock.has(name)) {
    const k = getKernel(name, 'wasm');
    if (k) stock.set(name, k);
  }
  return stock.get(name);
}

export function stockKernel(name: string): KernelConfig {
  const k = captureStockKernel(name);
  if (!k) throw new Error(`tfjs-backend-wasm has no ${name} kernel`);
  return k;
}

function run(name: string, backend: WasmBackendLike, inputs: Record<string, TensorInfo>, attrs: Record<string, unknown> = {}): TensorInfo {
  return stockKernel(name).kernelFunc({ inputs, backend: backend as never, attrs: attrs as never }) as TensorInfo;
}

/** A view of the same buffer under another shape (no copy, no new reference). */
export function reshaped(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

/**
 * [M, K] x [K, N] -> [M, N] on XNNPACK. The wasm BatchMatMul only takes the XNNPACK path for a
 * single batch without transposes; it packs B on every call, so callers pass the narrower matrix
 * as B.
 */
export function matMul(backend: WasmBackendLike, a: TensorInfo, b: TensorInfo): TensorInfo {
  const [m, k] = a.shape;
  const n = b.shape[1];
  const out = run('BatchMatMul', backend, { a: reshaped(a, [1, m, k]), b: reshaped(b, [1, k, n]) }, { transposeA: false, transposeB: false });
  out.shape = [m, n];
  return out;
}

/** 2-D transpose with the backend's C++ kernel. */
export function transpose2d(backend: WasmBackendLike, x: TensorInfo): TensorInfo {
  return run('Transpose', backend, { x }, { perm: [1, 0] });
}

export function dispose(backend: WasmBackendLike, ...ts: TensorInfo[]): void {
  for (const t of ts) backend.disposeData(t.dataId);
}

/**
 * X^T Y for X [rows, kx] and Y [rows, ky] (rows = every position of a batch): the filter gradient
 * of a convolution as one matrix product. XNNPACK takes no transposes, so one operand must be
 * transposed first; the wasm Transpose is slow when both sides are large, so transpose the one
 * with fewer columns (and, if that was Y, transpose the small [ky, kx] result back).
 */
export function gramXtY(backend: WasmBackendLike, x: TensorInfo, y: TensorInfo): TensorInfo {
  const [rows, kx] = x.shape;
  const ky = y.shape[1];
  if (kx <= ky) {
    const xt = transpose2d(backend, reshaped(x, [rows, kx]));
    const out = matMul(backend, xt, reshaped(y, [rows, ky]));
    dispose(backend, xt);
    return out;
  }
  const yt = transpose2d(backend, reshaped(y, [rows, ky]));
  const outT = matMul(backend, yt, reshaped(x, [rows, kx]));
  dispose(backend, yt);
  const out = transpose2d(backend, outT);
  dispose(backend, outT);
  return out;
}
