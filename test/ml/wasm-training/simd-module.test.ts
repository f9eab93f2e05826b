// The committed SIMD module bytes are the assembly of the committed .wat (rebuild with
// `npm run build:simd` after editing it), and this Node runs them.
import { expect, test } from 'vitest';
import { assembleSimdModule } from '../../../scripts/build-simd.js';
import { SIMD_MODULE_BASE64 } from '../../../src/ml/backends/wasm-training/simd-module.generated.js';

test('simd-module.generated.ts is the assembled simd-kernels.wat', async () => {
  const bytes = await assembleSimdModule();
  expect(Buffer.from(bytes).toString('base64')).toBe(SIMD_MODULE_BASE64);
});

test('WebAssembly SIMD is available here, so the SIMD paths are the ones tested and benchmarked', () => {
  const wasm = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly;
  expect(wasm.validate(Buffer.from(SIMD_MODULE_BASE64, 'base64'))).toBe(true);
});
