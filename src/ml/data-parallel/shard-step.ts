// One rank's part of a training step split over threads. Every rank runs it on its own rows with
// its own replica of the model; the collective makes the pieces add up to the one-thread step:
//   - batch norm and the activation ranges see the whole batch (exchanges inside the forward and
//     backward passes);
//   - each rank's loss is its rows' share of the whole batch's mean, so the per-rank gradients add
//     up to the whole batch's gradient;
//   - the summed gradients are the same on every rank, so every replica takes the same update and
//     stays bit-identical to the others (no broadcast of weights after the first).
import { tf } from '../tf.js';
import { smoothedCrossEntropy } from '../loss.js';
import type { ForwardMode, MobileNetV2 } from '../mobilenet-v2.js';
import type { MomentumSgd, SgdParam } from '../optimizer.js';
import { liveF32 } from '../tensor-memory.js';
import { shardRows } from './collective-math.js';
import { withCollective } from './step-collective.js';
import type { SharedCollective } from './shared-collective.js';
import type { StepBatch } from '../train-api.js';

/** This rank's rows of one batch (x, y and n are its own rows) and where they sit in it. */
export interface ShardRows extends StepBatch {
  /** Index of the first row in the whole batch, and the whole batch's size. */
  offset: number;
  total: number;
}

/** Rank `rank`'s rows of batch `b` as views into it (shardRows decides which). */
export function batchShard(b: StepBatch, rank: number, world: number): ShardRows {
  const { start, end } = shardRows(b.n, rank, world);
  const per = b.size * b.size * 3;
  return { ...b, x: b.x.subarray(start * per, end * per), y: b.y.subarray(start, end), n: end - start, offset: start, total: b.n };
}

/** This rank's rows, and the replica and optimizer they train. */
export interface ShardStepInput extends ShardRows {
  model: MobileNetV2;
  opt: MomentumSgd;
  /** The trainable parameters, in the same order on every rank (the gradient exchange's layout). */
  params: SgdParam[];
}

/** Elements of the gradient exchange: every trainable parameter, in order. */
export function gradientLength(params: SgdParam[]): number {
  return params.reduce((a, p) => a + p.variable.size, 0);
}

/** Runs this rank's part of the step; returns the whole batch's loss (the same on every rank). */
export function trainShardStep(s: ShardStepInput, coll: SharedCollective): number {
  coll.setBatch(s.n, s.total);
  const xs = tf.tensor4d(s.x, [s.n, s.size, s.size, 3]);
  const ys = tf.tensor1d(s.y, 'int32');
  const mode: ForwardMode = { ...s.mode, rows: { offset: s.offset, total: s.total } };
  const share = s.n / s.total;
  try {
    return withCollective(coll, () => {
      const { value, grads } = tf.variableGrads(
        () => tf.mul<tf.Scalar>(smoothedCrossEntropy(s.model.forward(xs, mode), ys, s.labelSmoothing), share),
        s.params.map((p) => p.variable),
      );
      const local = value.dataSync()[0];
      value.dispose();
      const loss = coll.sum(local);
      // Parameters without a gradient are absent on every rank alike (the same graph).
      const present = s.params.filter((p) => grads[p.variable.name]);
      const sum = coll.allReduceGrads((own) => {
        let at = 0;
        for (const p of present) {
          const g = grads[p.variable.name];
          own.set(liveF32(g) ?? g.dataSync(), at);
          at += g.size;
        }
      });
      for (const g of Object.values(grads)) g.dispose();
      const summed = new Map<string, Float32Array>();
      let at = 0;
      for (const p of present) {
        summed.set(p.name, sum.subarray(at, at + p.variable.size));
        at += p.variable.size;
      }
      if (Number.isFinite(loss)) s.opt.stepFromArrays(s.params, summed, s.lr);
      return loss;
    });
  } finally {
    xs.dispose();
    ys.dispose();
  }
}
