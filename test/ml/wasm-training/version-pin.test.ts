import { describe, expect, test } from 'vitest';
import { getKernel } from '@tensorflow/tfjs-core';
import {
  assertCheckedTfjsVersion,
  CHECKED_TFJS_VERSION,
  registerWasmTrainingKernels,
  wasmTrainingKernelNames,
} from '../../../src/ml/backends/wasm-training/index.js';

describe('wasm training kernels are pinned to the tfjs version they were checked against', () => {
  test('the installed tfjs is the checked one', () => {
    expect(() => assertCheckedTfjsVersion()).not.toThrow();
    expect(CHECKED_TFJS_VERSION).toBe('4.22.0');
  });

  test('another tfjs-core or tfjs-backend-wasm version is refused with a stable code', () => {
    expect(() => assertCheckedTfjsVersion('4.21.0', '4.22.0')).toThrow(expect.objectContaining({ code: 'WASM_TRAINING_TFJS_VERSION_MISMATCH' }));
    expect(() => assertCheckedTfjsVersion('4.22.0', '5.0.0')).toThrow(/tfjs-backend-wasm 5\.0\.0/);
  });

  test('registration is idempotent and registers every listed kernel for wasm', () => {
    registerWasmTrainingKernels();
    const first = wasmTrainingKernelNames().map((n) => getKernel(n, 'wasm')?.kernelFunc);
    registerWasmTrainingKernels();
    const second = wasmTrainingKernelNames().map((n) => getKernel(n, 'wasm')?.kernelFunc);
    expect(first.every((f) => typeof f === 'function')).toBe(true);
    expect(second).toEqual(first);
    expect(wasmTrainingKernelNames()).toEqual(
      expect.arrayContaining(['Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropFilter', 'DepthwiseConv2dNativeBackpropInput']),
    );
  });
});
