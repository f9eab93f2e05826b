// Shared set-up for the wasm training kernel tests: both backends, gradients, the kernels.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { registerWasmTrainingKernels } from '../../../src/ml/backends/wasm-training/index.js';

export { tf };

export async function useBackend(name: 'cpu' | 'wasm'): Promise<void> {
  if (name === 'wasm') registerWasmTrainingKernels();
  await tf.setBackend(name);
  await tf.ready();
}

/** Deterministic pseudo-random values in [-1, 1) (a small LCG: same data on both backends). */
export function randomValues(n: number, seed: number, zeroFraction = 0): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 4294967296;
    out[i] = u < zeroFraction ? 0 : u * 2 - 1;
  }
  return out;
}

/** max |a - b| / max |b|: error relative to the reference's scale (robust to near-zero entries). */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Runs one kernel on a backend from plain arrays, returning its output values and shape. */
export async function runKernelOn(
  backend: 'cpu' | 'wasm',
  kernel: string,
  inputs: Record<string, { values: Float32Array; shape: number[] }>,
  attrs: Record<string, unknown>,
): Promise<{ values: Float32Array; shape: number[] }> {
  await useBackend(backend);
  return tf.tidy(() => {
    const ins: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(inputs)) ins[k] = tf.tensor(v.values, v.shape, 'float32');
    const out = tf.engine().runKernel<tf.Tensor>(kernel, ins, attrs as tf.NamedAttrMap);
    return { values: out.dataSync() as Float32Array, shape: out.shape };
  });
}
