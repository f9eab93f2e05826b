// Makes tfjs-backend-wasm a training backend: registers the gradient kernels it lacks (and faster
// replacements for some it has). These kernels reach into the wasm backend's internals, so they are
// only registered on the exact tfjs version they were checked against.
import { getKernel, registerKernel, unregisterKernel, version_core, type KernelConfig } from '@tensorflow/tfjs-core';
import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import { convGradKernelConfigs } from './conv-grad-kernels.js';
import { WasmTrainingError } from './errors.js';
import { captureStockKernel } from './wasm-calls.js';

export { WasmTrainingError } from './errors.js';

/** The tfjs version these kernels were written and gradient-checked against. */
export const CHECKED_TFJS_VERSION = '4.22.0';

let registered = false;

export function assertCheckedTfjsVersion(core = version_core, wasm = version_wasm): void {
  if (core !== CHECKED_TFJS_VERSION || wasm !== CHECKED_TFJS_VERSION) {
    throw new WasmTrainingError(
      'WASM_TRAINING_TFJS_VERSION_MISMATCH',
      `wasm training kernels were checked against tfjs ${CHECKED_TFJS_VERSION}, but found ` +
        `@tensorflow/tfjs-core ${core} and @tensorflow/tfjs-backend-wasm ${wasm}; ` +
        `install tfjs ${CHECKED_TFJS_VERSION} or use the cpu backend.`,
    );
  }
}

/** Kernels added or replaced on 'wasm', in registration order. */
export function wasmTrainingKernelConfigs(): KernelConfig[] {
  return [...convGradKernelConfigs];
}

/** Names of the kernels this module registers for 'wasm'. */
export function wasmTrainingKernelNames(): string[] {
  return wasmTrainingKernelConfigs().map((k) => k.kernelName);
}

/**
 * Registers the training kernels for the 'wasm' backend. Idempotent. Throws a WasmTrainingError
 * with code WASM_TRAINING_TFJS_VERSION_MISMATCH on any other tfjs version.
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  assertCheckedTfjsVersion();
  // Keep the stock kernels reachable for the cases our replacements hand back to them.
  for (const name of ['BatchMatMul', 'Transpose', 'Identity', ...wasmTrainingKernelNames()]) captureStockKernel(name);
  for (const config of wasmTrainingKernelConfigs()) {
    const existing = getKernel(config.kernelName, 'wasm');
    if (existing != null) unregisterKernel(config.kernelName, 'wasm');
    // A replaced kernel keeps the stock setupFunc: other kernels may rely on what it initialised.
    registerKernel({ ...config, setupFunc: config.setupFunc ?? existing?.setupFunc });
  }
  registered = true;
}
