// Picks the training backend at start-up: tfjs-node (libtensorflow) when it is installed, else wasm
// when our wasm training kernels load, else the pure-JS cpu backend. TFJS_BACKEND overrides.
// tfjs-node is an optionalDependency that fails to install offline, so an import failure simply
// means "absent". Imports are dynamic so that nothing here breaks the build or start-up when a
// backend (or the wasm-training module, written separately) is missing.
import { engineSettings } from '../config/settings.js';
import { tf } from './tf.js';
import type { BackendName } from './train-api.js';
import type { Logger } from '../logger.js';
import { STOCK_QAT_OPS, useQatOps, type QatOps } from './qat-ops.js';
import { useSgdKernel, type SgdKernel } from './optimizer.js';

const WASM_TRAINING = './backends/wasm-training/index.js';

export class BackendError extends Error {
  readonly code = 'BACKEND_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'BackendError';
  }
}

const TF_NAME: Record<BackendName, string> = { tensorflow: 'tensorflow', wasm: 'wasm', cpu: 'cpu' };

async function tryTensorflow(): Promise<string | null> {
  try {
    // A variable specifier keeps TypeScript from requiring the (optional) package's types.
    const pkg = '@tensorflow/tfjs-node';
    await import(pkg);
    return (await tf.setBackend('tensorflow')) ? null : 'setBackend(tensorflow) failed';
  } catch (e) {
    return (e as Error).message.split('\n')[0] ?? 'import failed';
  }
}

type WasmTrainingModule = { registerWasmTrainingKernels?: (opts?: { simd?: boolean }) => void; simdEnabled?: () => boolean };

async function tryWasm(simd: boolean | undefined): Promise<string | null> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    const training = (await import(WASM_TRAINING)) as WasmTrainingModule;
    if (typeof training.registerWasmTrainingKernels !== 'function') return 'wasm-training module has no registerWasmTrainingKernels';
    training.registerWasmTrainingKernels({ simd });
    return (await tf.setBackend('wasm')) ? null : 'setBackend(wasm) failed';
  } catch (e) {
    return (e as Error).message.split('\n')[0] ?? 'import failed';
  }
}

let chosen: BackendName | null = null;

export interface SelectBackendOptions {
  logger?: Logger;
  /** The backend that must start (default: TFJS_BACKEND, else the first that starts). */
  prefer?: BackendName;
  /**
   * The wasm-training kernels' SIMD paths (QATSERVE_WASM_SIMD, which the callers read from the
   * settings: this module never reads it). Applied whenever given, also to an earlier choice of
   * wasm; not given: left as it is (on, unless a caller turned it off).
   */
  wasmSimd?: boolean;
}

/**
 * Selects and initialises the backend (once per process; later calls return the first choice
 * unless `prefer` names another). `TFJS_BACKEND=tensorflow|wasm|cpu` overrides the order and fails
 * loudly when that backend cannot start.
 */
export async function selectBackend(opts: SelectBackendOptions = {}): Promise<BackendName> {
  const env = (opts.prefer ?? engineSettings().backend ?? '').trim().toLowerCase();
  if (chosen && (!env || env === chosen)) {
    if (chosen === 'wasm' && opts.wasmSimd !== undefined)
      ((await import(WASM_TRAINING)) as WasmTrainingModule).registerWasmTrainingKernels?.({ simd: opts.wasmSimd });
    return chosen;
  }
  const tryers: Record<BackendName, () => Promise<string | null>> = {
    tensorflow: tryTensorflow,
    wasm: () => tryWasm(opts.wasmSimd),
    cpu: async () => ((await tf.setBackend('cpu')) ? null : 'setBackend(cpu) failed'),
  };
  if (env) {
    if (!(env in tryers)) throw new BackendError(`TFJS_BACKEND=${env}: expected tensorflow, wasm or cpu`);
    const name = env as BackendName;
    const err = await tryers[name]();
    if (err) throw new BackendError(`TFJS_BACKEND=${name} requested but unavailable: ${err}`);
    chosen = name;
  } else {
    const reasons: string[] = [];
    for (const name of ['tensorflow', 'wasm', 'cpu'] as BackendName[]) {
      const err = await tryers[name]();
      if (!err) {
        chosen = name;
        break;
      }
      reasons.push(`${name}: ${err}`);
    }
    if (!chosen) throw new BackendError(`no tfjs backend could start (${reasons.join('; ')})`);
    if (reasons.length > 0) opts.logger?.info(`tfjs backends skipped: ${reasons.join('; ')}`);
  }
  await tf.ready();
  const ops = await installFusedOps(opts.logger);
  const simd = chosen === 'wasm' ? ((await import(WASM_TRAINING)) as WasmTrainingModule).simdEnabled?.() : undefined;
  const detail = simd === undefined ? '' : `, SIMD ${simd ? 'on' : 'off'}`;
  opts.logger?.info({ backend: chosen, tfBackend: TF_NAME[chosen], qatOps: ops, wasmSimd: simd }, `tfjs backend: ${chosen} (QAT ops: ${ops}${detail})`);
  return chosen;
}

/**
 * Uses the wasm-training module's fused QAT ops (fake quant, BN) and its SIMD momentum-SGD update
 * when it loads: they have kernels for wasm and cpu (the update: wasm) and fall back to stock tfjs
 * ops (the JS update) elsewhere, with the same results as ours.
 * QATSERVE_FUSED_OPS=off keeps the stock ops (for comparisons and bisecting).
 */
async function installFusedOps(logger?: Logger): Promise<string> {
  if (!engineSettings().fusedOps) {
    useQatOps(null);
    useSgdKernel(null);
    return 'stock';
  }
  try {
    const m = (await import(WASM_TRAINING)) as Partial<QatOps> & { registerQatOps?: () => void; sgdUpdateOnHeap?: SgdKernel };
    // Every op QatOps names, or none: the module must match this build.
    const names = Object.keys(STOCK_QAT_OPS) as Array<keyof QatOps>;
    if (!m.registerQatOps || names.some((k) => typeof m[k] !== 'function')) return 'stock';
    m.registerQatOps();
    useQatOps(Object.fromEntries(names.map((k) => [k, m[k]])) as unknown as QatOps, 'wasm-training');
    useSgdKernel(m.sgdUpdateOnHeap ?? null);
    return 'wasm-training';
  } catch (e) {
    logger?.info(`fused QAT ops unavailable, using stock tfjs ops: ${(e as Error).message.split('\n')[0]}`);
    useQatOps(null);
    useSgdKernel(null);
    return 'stock';
  }
}

/** The active backend as a BackendName (after selectBackend, or cpu by default). */
export function activeBackend(): BackendName {
  const b = tf.getBackend();
  return b === 'tensorflow' || b === 'wasm' ? b : 'cpu';
}
