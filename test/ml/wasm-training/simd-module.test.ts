// The committed SIMD module bytes are the assembly of the committed .wat (rebuild with
// `npm run build:simd` after editing it), this Node runs them with relaxed SIMD, and the module
// without relaxed SIMD (for runtimes that lack it) computes the same filter gradient and 1x1
// convolution products.
import { expect, test } from 'vitest';
import { assembleSimdModules } from '../../../scripts/build-simd.js';
import { SIMD_MODULE_BASE64, SIMD_MODULE_PLAIN_BASE64 } from '../../../src/ml/backends/wasm-training/simd-module.generated.js';
import { simdModuleKind } from '../../../src/ml/backends/wasm-training/simd.js';

interface Wasm {
  Memory: new (d: { initial: number }) => { buffer: ArrayBuffer };
  Module: new (b: Uint8Array) => object;
  Instance: new (m: object, i: object) => { exports: Record<'gram_xty' | 'gemm_pack' | 'gemm', (...a: number[]) => void> };
}
const wasm = (globalThis as unknown as { WebAssembly: Wasm }).WebAssembly;

test('simd-module.generated.ts is the assembled simd-kernels.wat, with and without relaxed SIMD', async () => {
  const { relaxed, plain } = await assembleSimdModules();
  expect(Buffer.from(relaxed).toString('base64')).toBe(SIMD_MODULE_BASE64);
  expect(Buffer.from(plain).toString('base64')).toBe(SIMD_MODULE_PLAIN_BASE64);
});

test('this Node runs the module with relaxed SIMD, so those are the paths tested and benchmarked', () => {
  expect(simdModuleKind()).toBe('relaxed');
});

test('both modules compute X^T Y (the 1x1 filter gradient) to f32 rounding, over row blocks and both tile widths', () => {
  // 37 rows in blocks of 16; 12 x 12: one 8-wide and one 4-wide column tile per row of tiles.
  const rows = 37;
  const m = 12;
  const n = 12;
  const x = Float32Array.from({ length: rows * m }, (_, i) => Math.sin(i * 1.7) * 2);
  const y = Float32Array.from({ length: rows * n }, (_, i) => Math.cos(i * 0.9) * 3);
  const want = new Float64Array(m * n);
  for (let r = 0; r < rows; r++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) want[i * n + j] += x[r * m + i] * y[r * n + j];
  const scale = Math.max(...want.map(Math.abs));
  for (const b64 of [SIMD_MODULE_BASE64, SIMD_MODULE_PLAIN_BASE64]) {
    const memory = new wasm.Memory({ initial: 1 });
    const { gram_xty } = new wasm.Instance(new wasm.Module(Buffer.from(b64, 'base64')), { env: { memory } }).exports;
    const xAt = 0;
    const yAt = x.byteLength;
    const accAt = yAt + y.byteLength;
    const packAt = accAt + 8 * m * n;
    new Float32Array(memory.buffer, xAt, x.length).set(x);
    new Float32Array(memory.buffer, yAt, y.length).set(y);
    gram_xty(xAt, yAt, accAt, rows, m, n, 16, packAt, 0);
    const got = new Float64Array(memory.buffer, accAt, m * n);
    let worst = 0;
    for (let k = 0; k < got.length; k++) worst = Math.max(worst, Math.abs(got[k] - want[k]) / scale);
    expect(worst).toBeLessThan(1e-6);
    // One block of all 37 rows: the tiles store f32 results straight into the output.
    const outAt = packAt + 4 * rows * (m + n);
    gram_xty(xAt, yAt, outAt, rows, m, n, rows, packAt, 1);
    const direct = new Float32Array(memory.buffer, outAt, m * n);
    let worstDirect = 0;
    for (let k = 0; k < direct.length; k++) worstDirect = Math.max(worstDirect, Math.abs(direct[k] - want[k]) / scale);
    expect(worstDirect).toBeLessThan(1e-6);
  }
});

test('both modules compute A B and A B^T (a 1x1 convolution and its input gradient), over row blocks, short rows and both tile widths', () => {
  // 23 rows in blocks of 8 (the last 7: one 4-row tile and three single rows); k = 5; n = 12: one
  // 8-wide and one 4-wide panel.
  const [m, k, n] = [23, 5, 12];
  const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 1.3) * 2);
  const b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.7) * 3);
  const bt = Float32Array.from({ length: n * k }, (_, i) => b[(i % k) * n + Math.floor(i / k)]);
  const want = new Float64Array(m * n);
  for (let r = 0; r < m; r++) for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) want[r * n + j] += a[r * k + i] * b[i * n + j];
  const scale = Math.max(...want.map(Math.abs));
  for (const b64 of [SIMD_MODULE_BASE64, SIMD_MODULE_PLAIN_BASE64]) {
    for (const transposed of [false, true]) {
      const memory = new wasm.Memory({ initial: 1 });
      const { gemm_pack, gemm } = new wasm.Instance(new wasm.Module(Buffer.from(b64, 'base64')), { env: { memory } }).exports;
      const [aAt, bAt, packAt, cAt] = [0, 1024, 2048, 4096];
      new Float32Array(memory.buffer, aAt, a.length).set(a);
      new Float32Array(memory.buffer, bAt, b.length).set(transposed ? bt : b);
      gemm_pack(bAt, packAt, k, n, transposed ? 4 : 4 * n, transposed ? 4 * k : 4);
      gemm(aAt, packAt, cAt, m, k, n, 8);
      const got = new Float32Array(memory.buffer, cAt, m * n);
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / scale);
      expect(worst).toBeLessThan(1e-6);
      // Nothing written past C.
      expect(new Float32Array(memory.buffer, cAt + 4 * m * n, 8).every((v) => v === 0)).toBe(true);
    }
  }
});
