// Momentum SGD as torch.optim.SGD (dampening 0, no Nesterov): v = m*v + g + wd*w; w -= lr*v.
// Weight decay is an L2 term added to the gradient, applied only to conv and dense weights (not to
// BN gamma/beta or biases, as in the torchvision and MindSpore recipes). The momentum buffers are
// part of the checkpoint, so a resumed run continues the exact same trajectory.
//
// On wasm and cpu the update is one loop per parameter over the tensors' storage
// (tensor-memory.ts) instead of six tfjs ops, with the same float32 rounding op for op, so both
// paths give bit-identical weights; elsewhere it runs as tfjs ops. Momentum buffers and vectors
// (gamma, beta, bias) are written in place. Conv and dense weights get a fresh tensor instead:
// XNNPACK kernels keep packed copies of their weight operands, keyed by tensor id, so weights
// changed in place would be read stale by the next forward pass (measured: the loss of the step
// after an in-place update differed from the tfjs-ops update's). With the wasm-training module
// loaded, that loop runs in its SIMD module (useSgdKernel): at 1.0@32 the JS loop over 2.3 M
// parameters was about a tenth of a step.
import { tf } from './tf.js';
import { liveF32, ownedF32 } from './tensor-memory.js';

export interface SgdOptions {
  momentum: number;
  weightDecay: number;
}

export interface SgdParam {
  name: string;
  variable: tf.Variable;
  decay: boolean;
}

const f = Math.fround;

/**
 * One parameter's update, in float32 exactly as the tfjs ops compute it: g' = g + w*wd (decayed
 * parameters), v = v*m + g' (v = g' on the first step), w' = w - v*lr. `v` is updated in place;
 * w' goes to `wOut` (which may be `w`).
 */
export function sgdUpdate(
  w: Float32Array,
  g: ArrayLike<number>,
  v: Float32Array,
  wOut: Float32Array,
  o: { firstStep: boolean; decay: number; momentum: number; lr: number },
): void {
  const wd = f(o.decay);
  const m = f(o.momentum);
  const lr = f(o.lr);
  for (let i = 0; i < w.length; i++) {
    const gi = wd > 0 ? f(g[i] + f(w[i] * wd)) : g[i];
    const vi = o.firstStep ? gi : f(f(v[i] * m) + gi);
    v[i] = vi;
    wOut[i] = f(w[i] - f(vi * lr));
  }
}

type UpdateArgs = Parameters<typeof sgdUpdate>;
/** A faster sgdUpdate with the same results; false where it cannot run (the JS loop then does). */
export type SgdKernel = (...args: UpdateArgs) => boolean;

let kernel: SgdKernel | null = null;

/** Installs (or, with null, removes) the accelerated update; backend.ts does with the fused ops. */
export function useSgdKernel(k: SgdKernel | null): void {
  kernel = k;
}

function update(...args: UpdateArgs): void {
  if (!kernel?.(...args)) sgdUpdate(...args);
}

/** Matrix operands of XNNPACK kernels (conv and dense weights): never updated in place. */
const needsFreshTensor = (p: SgdParam) => p.variable.rank >= 2;

export class MomentumSgd {
  /** Momentum buffer per parameter name (absent until the first step, as in PyTorch). */
  readonly buffers = new Map<string, tf.Tensor>();

  constructor(readonly opts: SgdOptions) {}

  /** Applies one update. `grads` is keyed by parameter name; the caller disposes it. */
  step(params: SgdParam[], grads: Map<string, tf.Tensor>, lr: number): void {
    const todo = params.filter((p) => grads.has(p.name));
    if (this.stepInPlace(todo, (p) => liveF32(grads.get(p.name)!), lr)) return;
    tf.tidy(() => {
      for (const p of todo) {
        const g0 = grads.get(p.name)!;
        const g = p.decay && this.opts.weightDecay > 0 ? tf.add(g0, tf.mul(p.variable, this.opts.weightDecay)) : g0;
        const prev = this.buffers.get(p.name);
        const v = prev ? tf.add(tf.mul(prev, this.opts.momentum), g) : tf.clone(g);
        p.variable.assign(tf.sub(p.variable, tf.mul(v, lr)));
        tf.keep(v);
        prev?.dispose();
        this.buffers.set(p.name, v);
      }
    });
  }

  /**
   * The update from gradients held as plain arrays (a data-parallel step's summed gradients), in
   * place where the backend allows, else through tensors.
   */
  stepFromArrays(params: SgdParam[], grads: Map<string, Float32Array>, lr: number): void {
    const todo = params.filter((p) => grads.has(p.name));
    if (this.stepInPlace(todo, (p) => grads.get(p.name)!, lr)) return;
    const tensors = new Map(todo.map((p) => [p.name, tf.tensor(grads.get(p.name)!, p.variable.shape)]));
    try {
      this.step(todo, tensors, lr);
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  }

  /** False (and nothing changed) when some variable or buffer cannot be written in place. */
  private stepInPlace(todo: SgdParam[], grad: (p: SgdParam) => ArrayLike<number> | null, lr: number): boolean {
    const writable = (t: tf.Tensor | undefined) => !t || ownedF32(t) !== null;
    if (!todo.every((p) => liveF32(p.variable) && (needsFreshTensor(p) || writable(p.variable)) && writable(this.buffers.get(p.name)))) return false;
    // Allocate every new tensor before taking any view: an allocation may move the wasm heap.
    const first = new Set<string>();
    for (const p of todo) {
      if (this.buffers.has(p.name)) continue;
      this.buffers.set(p.name, tf.zeros(p.variable.shape));
      first.add(p.name);
    }
    const fresh = new Map(todo.filter(needsFreshTensor).map((p) => [p.name, tf.zeros(p.variable.shape)]));
    for (const p of todo) {
      const g = grad(p);
      const w = liveF32(p.variable);
      const v = ownedF32(this.buffers.get(p.name)!);
      const next = fresh.get(p.name);
      const out = next ? liveF32(next) : ownedF32(p.variable);
      if (!g || !w || !v || !out) throw new Error(`optimizer: storage of ${p.name} became unavailable mid-update`);
      update(w, g, v, out, { firstStep: first.has(p.name), decay: p.decay ? this.opts.weightDecay : 0, momentum: this.opts.momentum, lr });
    }
    for (const p of todo) {
      const next = fresh.get(p.name);
      if (!next) continue;
      p.variable.assign(next);
      next.dispose();
    }
    return true;
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}
