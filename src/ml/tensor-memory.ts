// In-place access to a float32 tensor's storage on the wasm and cpu backends, for updates that
// would otherwise cost several tfjs ops per tensor (the optimizer's per-parameter update, BN's
// running statistics). At small input sizes a training step is mostly per-op overhead, not
// arithmetic: a 0.35@32 QAT step spent 50 ms in kernels and ~55 ms in between, and the optimizer
// alone ran ~6 ops on each of 160 parameters.
//
// Writing in place is only safe when nothing else holds the same buffer (tfjs shares buffers
// between tensors: reshape, clone, our Identity). ownedF32 returns null unless the tensor is the
// buffer's only holder; callers then fall back to tfjs ops.
import { tf } from './tf.js';
import { f32View, type WasmBackendLike } from './backends/wasm-training/heap.js';

interface Storage {
  refCount(dataId: object): number;
}
interface CpuLike extends Storage {
  data: { get(dataId: object): { values?: Float32Array } };
}

/**
 * A live view of `t`'s float32 values, or null on other backends or dtypes. On wasm the view goes
 * stale at the next allocation (the heap may grow): take views after allocating, use them at once.
 */
export function liveF32(t: tf.Tensor): Float32Array | null {
  if (t.dtype !== 'float32' || t.isDisposed) return null;
  const name = tf.getBackend();
  if (name === 'wasm') {
    return f32View(tf.backend() as unknown as WasmBackendLike, t);
  }
  if (name === 'cpu') {
    const values = (tf.backend() as unknown as CpuLike).data.get(t.dataId).values;
    return values instanceof Float32Array ? values : null;
  }
  return null;
}

/** liveF32 for a tensor that may be written in place: null when its buffer is shared. */
export function ownedF32(t: tf.Tensor): Float32Array | null {
  const name = tf.getBackend();
  if (name !== 'wasm' && name !== 'cpu') return null;
  if ((tf.backend() as unknown as Storage).refCount(t.dataId) !== 1) return null;
  return liveF32(t);
}
