// Momentum SGD as torch.optim.SGD (dampening 0, no Nesterov): v = m*v + g + wd*w; w -= lr*v.
// Weight decay is an L2 term added to the gradient, applied only to conv and dense weights (not to
// BN gamma/beta or biases, as in the torchvision and MindSpore recipes). The momentum buffers are
// part of the checkpoint, so a resumed run continues the exact same trajectory.
import { tf } from './tf.js';

export interface SgdOptions {
  momentum: number;
  weightDecay: number;
}

export interface SgdParam {
  name: string;
  variable: tf.Variable;
  decay: boolean;
}

export class MomentumSgd {
  /** Momentum buffer per parameter name (absent until the first step, as in PyTorch). */
  readonly buffers = new Map<string, tf.Tensor>();

  constructor(readonly opts: SgdOptions) {}

  /** Applies one update. `grads` is keyed by parameter name; the caller disposes it. */
  step(params: SgdParam[], grads: Map<string, tf.Tensor>, lr: number): void {
    tf.tidy(() => {
      for (const p of params) {
        const g0 = grads.get(p.name);
        if (!g0) continue;
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

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}
