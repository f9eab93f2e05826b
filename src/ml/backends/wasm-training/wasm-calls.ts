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
  return stockKernel(name).kernelFunc({ inputs, backend: backend, attrs: attrs as never }) as TensorInfo;
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

/** Elements of B per XNNPACK call in gramXtY: about 1 MB, so its packed copy stays in cache (2^16..2^19 measured alike within this machine's noise; one 8x56x56 24x144 layer: 73 ms unchunked, under 30 ms chunked). */
const GRAM_B_CHUNK_ELEMENTS = 1 << 18;

/**
 * X^T Y for X [rows, kx] and Y [rows, ky] (rows = every position of a batch): the filter gradient
 * of a convolution as matrix products. XNNPACK takes no transposes and packs its B operand on every
 * call; with the long reduction over rows, one call packs a B far larger than the caches and
 * streams it once per few rows of A (measured: 8x56x56 rows, 24 x 144: 73 ms in one call, under
 * 30 ms in chunks). So: A = the narrower matrix transposed (in JS, chunk by chunk), B = a fresh
 * copy of the matching rows of the wider one (fresh tensors: XNNPACK caches packed weights by
 * tensor id), partial products summed in float64.
 */
export function gramXtY(backend: WasmBackendLike, x: TensorInfo, y: TensorInfo): TensorInfo {
  const [rows, kx] = x.shape;
  const ky = y.shape[1];
  const narrowIsX = kx <= ky;
  const narrow = narrowIsX ? x : y;
  const wide = narrowIsX ? y : x;
  const m = Math.min(kx, ky);
  const n = Math.max(kx, ky);
  const chunk = Math.max(256, Math.min(rows, Math.floor(GRAM_B_CHUNK_ELEMENTS / n)));
  const acc = new Float64Array(m * n);
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const kc = Math.min(chunk, rows - r0);
    const at = backend.makeOutput([m, kc], 'float32');
    const bt = kc === rows ? reshaped(wide, [rows, n]) : backend.makeOutput([kc, n], 'float32');
    const heap = backend.wasm.HEAPU8;
    const narrowOff = backend.dataIdMap.get(narrow.dataId).memoryOffset + 4 * r0 * m;
    transposeInto(
      new Float32Array(heap.buffer, narrowOff, kc * m),
      kc,
      m,
      new Float32Array(heap.buffer, backend.dataIdMap.get(at.dataId).memoryOffset, kc * m),
    );
    if (bt !== wide && kc !== rows) {
      const src = backend.dataIdMap.get(wide.dataId).memoryOffset + 4 * r0 * n;
      heap.copyWithin(backend.dataIdMap.get(bt.dataId).memoryOffset, src, src + 4 * kc * n);
    }
    const part = matMul(backend, at, bt);
    const pv = new Float32Array(backend.wasm.HEAPU8.buffer, backend.dataIdMap.get(part.dataId).memoryOffset, m * n);
    for (let i = 0; i < pv.length; i++) acc[i] += pv[i];
    dispose(backend, at, part);
    if (kc !== rows) dispose(backend, bt);
  }
  const out = backend.makeOutput([kx, ky], 'float32');
  const ov = new Float32Array(backend.wasm.HEAPU8.buffer, backend.dataIdMap.get(out.dataId).memoryOffset, kx * ky);
  if (narrowIsX) {
    for (let i = 0; i < ov.length; i++) ov[i] = acc[i];
  } else {
    // acc is (X^T Y)^T = [ky, kx].
    for (let i = 0; i < kx; i++) for (let j = 0; j < ky; j++) ov[i * ky + j] = acc[j * kx + i];
  }
  return out;
}

/** dst [cols, rows] = src [rows, cols]^T, in blocks of rows so both sides stay in cache. */
function transposeInto(src: Float32Array, rows: number, cols: number, dst: Float32Array): void {
  const block = 32;
  for (let r0 = 0; r0 < rows; r0 += block) {
    const r1 = Math.min(rows, r0 + block);
    for (let c = 0; c < cols; c++) {
      let o = c * rows + r0;
      for (let i = r0 * cols + c, r = r0; r < r1; r++, i += cols) dst[o++] = src[i];
    }
  }
}
