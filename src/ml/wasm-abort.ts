// A wasm abort (the module's `abort()`, mostly the 4 GB heap running out) surfaces as a bare
// "Aborted(). Build with -sASSERTIONS for more info." that tells a user nothing. The trainer and
// the exporter turn it into a job error that names the phase and the sizes that decide memory, so
// the user knows which knob to turn.

export type WasmPhase = 'train' | 'evaluate' | 'verify' | 'export';

/** The sizes that decide how much wasm heap a phase needs. */
export interface WasmSizes {
  widthMultiplier: number;
  inputSize: number;
  /** Images per batch in the phase that aborted. */
  batchSize: number;
  valImages: number;
}

export class WasmAbortedError extends Error {
  readonly code = 'WASM_ABORTED';
  constructor(
    readonly phase: WasmPhase,
    readonly sizes: WasmSizes,
    cause: unknown,
  ) {
    super(
      `the wasm backend aborted during ${phase} (width ${sizes.widthMultiplier}, input ${sizes.inputSize} px, ` +
        `batch ${sizes.batchSize}, ${sizes.valImages} validation images): ${firstLine(cause)}. ` +
        'This is usually the 4 GB wasm heap running out: lower the batch size, the input size or the width multiplier.',
      { cause },
    );
    this.name = 'WasmAbortedError';
  }
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0].replace(/\.$/, '');
}

// The ES2023 lib has no WebAssembly types; the global exists in every Node version we support.
const WasmRuntimeError = (globalThis as unknown as { WebAssembly: { RuntimeError: abstract new (...args: never[]) => Error } }).WebAssembly.RuntimeError;

/** Whether `err` is the wasm module aborting (not an ordinary JS error thrown inside a phase). */
export function isWasmAbort(err: unknown): boolean {
  if (err instanceof WasmAbortedError) return false;
  if (err instanceof WasmRuntimeError) return true;
  const msg = err instanceof Error ? err.message : typeof err === 'string' ? err : '';
  return /^Aborted\(/.test(msg) || /\bAborted\(\)/.test(msg);
}

/** Runs `fn`; a wasm abort inside it is rethrown as WasmAbortedError naming `phase` and `sizes`. */
export async function inWasmPhase<T>(phase: WasmPhase, sizes: () => WasmSizes, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw isWasmAbort(err) ? new WasmAbortedError(phase, sizes(), err) : err;
  }
}
