// Activation ranges tracked by exponential moving average of per-batch min/max (TFMOT's
// MovingAverageQuantizer, MindSpore's FakeQuantWithMinMax with ema=True). The first observed batch
// initialises a range (no decay from an arbitrary [0, 0] or [-6, 6]).
//
// Early updates use tf.train.ExponentialMovingAverage's `num_updates` rule,
//     decay_t = min(decay, (1 + t) / (10 + t)),  t = updates so far,
// so a range follows the network while its activations still grow quickly: with a fixed 0.999 a
// from-scratch QAT run keeps the first batch's logit range (about +-0.05 at init) for thousands of
// steps, every logit saturates, the straight-through gradient is zero there, and the model does
// not learn (measured: chance accuracy after 3 epochs on the synthetic set). After ~10k updates
// the configured decay applies unchanged.
//
// Ranges are plain JS numbers: reading one min and one max per quantization point per step is
// cheap on every backend, and it makes the values exact in checkpoints and in the export.

export interface Range {
  min: number;
  max: number;
  /** Batches observed so far. */
  count: number;
}

/** The decay used for the update after `count` earlier ones. */
export function effectiveDecay(decay: number, count: number): number {
  return Math.min(decay, (1 + count) / (10 + count));
}

/** One EMA step. `prev` undefined means "never observed": take the batch range as is. */
export function emaUpdate(prev: Range | undefined, batch: { min: number; max: number }, decay: number): Range {
  if (!prev) return { min: batch.min, max: batch.max, count: 1 };
  const d = effectiveDecay(decay, prev.count);
  return {
    min: d * prev.min + (1 - d) * batch.min,
    max: d * prev.max + (1 - d) * batch.max,
    count: prev.count + 1,
  };
}

/** Named ranges of one model, one per activation quantization point. */
export class RangeTracker {
  readonly ranges = new Map<string, Range>();

  constructor(readonly decay: number) {}

  observe(name: string, batch: { min: number; max: number }): Range {
    const next = emaUpdate(this.ranges.get(name), batch, this.decay);
    this.ranges.set(name, next);
    return next;
  }

  get(name: string): Range | undefined {
    return this.ranges.get(name);
  }

  /** `{name: [min, max, count]}`: exact in JSON (doubles). */
  toJSON(): Record<string, number[]> {
    const out: Record<string, number[]> = {};
    for (const [k, r] of this.ranges) out[k] = [r.min, r.max, r.count];
    return out;
  }

  load(saved: Record<string, number[]>): void {
    this.ranges.clear();
    for (const [k, [min, max, count]] of Object.entries(saved)) {
      // A range without a count (older files) counts as settled.
      this.ranges.set(k, { min: min, max: max, count: count ?? Number.MAX_SAFE_INTEGER });
    }
  }
}
