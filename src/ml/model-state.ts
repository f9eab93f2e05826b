// Moving model and optimizer state between tfjs variables and checkpoint arrays.
import { tf } from './tf.js';
import type { NamedArray } from './checkpoint.js';
import { CheckpointError } from './checkpoint.js';
import type { MobileNetV2 } from './mobilenet-v2.js';
import type { MomentumSgd } from './optimizer.js';

const PARAM = 'param/';
const MOMENTUM = 'momentum/';

export async function snapshotState(model: MobileNetV2, opt: MomentumSgd | null): Promise<NamedArray[]> {
  const out: NamedArray[] = [];
  for (const p of model.params.values()) {
    out.push({ name: PARAM + p.name, shape: p.variable.shape.slice(), data: (await p.variable.data()) as Float32Array });
  }
  if (opt) {
    for (const [name, t] of opt.buffers) {
      out.push({ name: MOMENTUM + name, shape: t.shape.slice(), data: (await t.data()) as Float32Array });
    }
  }
  return out;
}

/**
 * Loads parameters (and, when `opt` is given, momentum buffers) into the model.
 * `strict`: every model parameter must be present with its shape (resume, inference).
 * Otherwise (init from another run) parameters whose shape differs are skipped and returned, so
 * a classifier for a different class count can be re-initialised.
 */
export function restoreState(model: MobileNetV2, opt: MomentumSgd | null, tensors: Map<string, NamedArray>, strict: boolean): { skipped: string[] } {
  const skipped: string[] = [];
  for (const p of model.params.values()) {
    const t = tensors.get(PARAM + p.name);
    const same = t && t.shape.length === p.variable.shape.length && t.shape.every((d, i) => d === p.variable.shape[i]);
    if (!same) {
      if (strict) {
        throw new CheckpointError('CHECKPOINT_MISMATCH', `checkpoint has no parameter ${p.name} of shape [${p.variable.shape}]`);
      }
      skipped.push(p.name);
      continue;
    }
    tf.tidy(() => p.variable.assign(tf.tensor(t.data.slice(), t.shape)));
  }
  if (opt) {
    opt.dispose();
    for (const [name, t] of tensors) {
      if (!name.startsWith(MOMENTUM)) continue;
      opt.buffers.set(name.slice(MOMENTUM.length), tf.tensor(t.data.slice(), t.shape));
    }
  }
  return { skipped };
}
