import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { activeBackend, BackendError, selectBackend } from '../../src/ml/backend.js';
import { qatOpsName } from '../../src/ml/qat-ops.js';
import { simdEnabled } from '../../src/ml/backends/wasm-training/index.js';
import { tf } from '../../src/ml/tf.js';
import { logParts } from '../../src/logger.js';

const tfjsNodeInstalled = (() => {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
})();

describe('selectBackend', () => {
  it('rejects an unknown TFJS_BACKEND value with a stable code', async () => {
    const err = await selectBackend({ prefer: 'gpu' as never }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.code).toBe('BACKEND_UNAVAILABLE');
  });

  it.skipIf(tfjsNodeInstalled)('fails loudly when tfjs-node is requested but not installed', async () => {
    const err = await selectBackend({ prefer: 'tensorflow' }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/TFJS_BACKEND=tensorflow requested but unavailable/);
  });

  it('honours an explicit cpu or wasm choice and reports it', async () => {
    const logs: string[] = [];
    const logger = { info: (a: object | string, b?: string) => logs.push(logParts(a, b).msg), warn: () => {}, error: () => {} };
    expect(await selectBackend({ prefer: 'cpu', logger })).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(activeBackend()).toBe('cpu');
    expect(logs.some((l) => l.startsWith('tfjs backend: cpu'))).toBe(true);
    // wasm trains through the wasm-training module's kernels, which also provide the fused ops.
    expect(await selectBackend({ prefer: 'wasm', logger })).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(qatOpsName()).toBe('wasm-training');
    expect(logs).toContain('tfjs backend: wasm (QAT ops: wasm-training, SIMD on)');
    const sum = tf.tidy(() => tf.sum(tf.tensor1d([1, 2, 3])).dataSync()[0]);
    expect(sum).toBe(6);
  });

  it('takes the SIMD switch from its caller (the edges pass QATSERVE_WASM_SIMD from the settings), also once wasm is chosen', async () => {
    expect(await selectBackend({ prefer: 'wasm' })).toBe('wasm');
    expect(simdEnabled()).toBe(true);
    try {
      // Applied to the earlier choice of wasm (the worker's thread selects before runTraining does).
      await selectBackend({ prefer: 'wasm', wasmSimd: false });
      expect(simdEnabled()).toBe(false);
      await selectBackend({ prefer: 'wasm' }); // not given (runTraining's own call): left as it is
      expect(simdEnabled()).toBe(false);
    } finally {
      await selectBackend({ prefer: 'wasm', wasmSimd: true });
    }
    expect(simdEnabled()).toBe(true);
  });
});
