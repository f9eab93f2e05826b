// The tfjs version these kernels were written and gradient-checked against. They use tfjs-backend-
// wasm internals (dataIdMap, heap layout, stock kernel signatures), so any other version is refused.
import { version_core } from '@tensorflow/tfjs-core';
import { version_wasm } from '@tensorflow/tfjs-backend-wasm';
import { WasmTrainingError } from './errors.js';

export const CHECKED_TFJS_VERSION = '4.22.0';

export function assertCheckedTfjsVersion(core: string = version_core, wasm: string = version_wasm): void {
  if (core !== CHECKED_TFJS_VERSION || wasm !== CHECKED_TFJS_VERSION) {
    throw new WasmTrainingError(
      'WASM_TRAINING_TFJS_VERSION_MISMATCH',
      `wasm training kernels were checked against tfjs ${CHECKED_TFJS_VERSION}, but found ` +
        `@tensorflow/tfjs-core ${core} and @tensorflow/tfjs-backend-wasm ${wasm}; ` +
        `install tfjs ${CHECKED_TFJS_VERSION} or use the cpu backend.`,
    );
  }
}
