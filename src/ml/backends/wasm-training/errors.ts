/** Error raised by the wasm training kernels; `code` is stable and machine-readable. */
export type WasmTrainingErrorCode = 'WASM_TRAINING_TFJS_VERSION_MISMATCH' | 'WASM_TRAINING_UNSUPPORTED' | 'WASM_TRAINING_BAD_INPUT';

export class WasmTrainingError extends Error {
  readonly code: WasmTrainingErrorCode;
  constructor(code: WasmTrainingErrorCode, message: string) {
    super(message);
    this.name = 'WasmTrainingError';
    this.code = code;
  }
}
