// Makes tfjs-backend-wasm a training backend: registers the gradient kernels it lacks, faster
// replacements for some it has, and fused QAT kernels (see ops.ts). These kernels reach into the
// wasm backend's internals, so they are only registered on the exact tfjs version they were
// checked against.
import { getKernel, registerKernel, unregisterKernel, type KernelConfig } from '@tensorflow/tfjs-core';
import { convGradKernelConfigs } from './conv-grad-kernels.js';
import { identityKernelConfig } from './identity-kernel.js';
import { pointwiseConvKernelConfig } from './pointwise-conv-kernel.js';
import { reduceKernelConfigs } from './reduce-kernels.js';
import { segmentSumKernelConfig } from './segment-sum-kernel.js';
import { registerQatOps } from './ops.js';
import { qatWasmKernelConfigs } from './qat-kernels.js';
import { setSimdEnabled } from './simd.js';

export { simdEnabled } from './simd.js';
import { assertCheckedTfjsVersion } from './version.js';
import { captureStockKernel } from './wasm-calls.js';

export { WasmTrainingError, type WasmTrainingErrorCode } from './errors.js';
export { assertCheckedTfjsVersion, CHECKED_TFJS_VERSION } from './version.js';
export {
  batchNormAct,
  batchNormTrain,
  fakeQuantAct,
  fakeQuantRelu6,
  fakeQuantWeight,
  qlinearAdd,
  range,
  registerQatOps,
  requantize,
  scaleShiftAct,
  sgdUpdateOnHeap,
} from './ops.js';

let registered = false;

/** Kernels added or replaced on 'wasm', in registration order. */
export function wasmTrainingKernelConfigs(): KernelConfig[] {
  return [pointwiseConvKernelConfig, ...convGradKernelConfigs, identityKernelConfig, segmentSumKernelConfig, ...reduceKernelConfigs, ...qatWasmKernelConfigs()];
}

/** Names of the kernels this module registers for 'wasm'. */
export function wasmTrainingKernelNames(): string[] {
  return wasmTrainingKernelConfigs().map((k) => k.kernelName);
}

export interface WasmTrainingOptions {
  /**
   * Whether the kernels use their WebAssembly SIMD paths where they can (default: on). Given by
   * the caller (the service passes QATSERVE_WASM_SIMD from its settings), never read from the
   * environment here, so the kernels behave the same with or without the server. Undefined leaves
   * the current choice.
   */
  simd?: boolean;
}

/**
 * Registers the training kernels for the 'wasm' backend (and the fused QAT ops' gradients and cpu
 * kernels). Idempotent (a later call still applies `simd`). Throws a WasmTrainingError with code
 * WASM_TRAINING_TFJS_VERSION_MISMATCH on any other tfjs version, before registering anything.
 */
export function registerWasmTrainingKernels(opts: WasmTrainingOptions = {}): void {
  if (opts.simd !== undefined) setSimdEnabled(opts.simd);
  if (registered) return;
  assertCheckedTfjsVersion();
  // Keep the stock kernels reachable for the cases our replacements hand back to them.
  for (const name of ['BatchMatMul', 'Transpose', ...wasmTrainingKernelNames()]) captureStockKernel(name);
  for (const config of wasmTrainingKernelConfigs()) {
    const existing = getKernel(config.kernelName, 'wasm');
    if (existing != null) unregisterKernel(config.kernelName, 'wasm');
    // A replaced kernel keeps the stock setupFunc: the stock kernel we fall back to needs it.
    registerKernel({ ...config, setupFunc: config.setupFunc ?? existing?.setupFunc });
  }
  registerQatOps();
  registered = true;
}
