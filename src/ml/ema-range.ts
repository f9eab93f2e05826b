// Activation ranges tracked by exponential moving average of per-batch min/max (TFMOT's
// MovingAverageQuantizer, MindSpore's FakeQuantWithMinMax with ema=True). The first observed batch
// initialises a range (so no decay from an arbitrary [0, 0]); later batches blend in with
// `1 - decay`. Ranges are plain JS numbers: reading one min and one max per quantization point per
// step is cheap on every backend, and it makes the values exact in checkpoints and in the export.

export interface Range {
  min: number;
  max: number;
}

/** One EMA step. `prev` undefined means "never observed": take the batch range as is. */
export function emaUpdate(prev: Range | undefined, batch: Range, decay: number): Range {
  if (!prev) return { min: batch.min, max: batch.max };
  return {
    min: decay * prev.min + (1 - decay) * batch.min,
    max: decay * prev.max + (1 - decay) * batch.max,
  };
}

/** Named ranges of one model, one per activation quantization point. */
export class RangeTracker {
  readonly ranges = new Map<string, Range>();

  constructor(readonly decay: number) {}

  observe(name: string, batch: Range): Range {
    const next = emaUpdate(this.ranges.get(name), batch, this.decay);
    this.ranges.set(name, next);
    return next;
  }

  get(name: string): Range | undefined {
    return this.ranges.get(name);
  }

  toJSON(): Record<string, [number, number]> {
    const out: Record<string, [number, number]> = {};
    for (const [k, r] of this.ranges) out[k] = [r.min, r.max];
    return out;
  }

  load(saved: Record<string, [number, number]>): void {
    this.ranges.clear();
    for (const [k, [min, max]] of Object.entries(saved)) this.ranges.set(k, { min, max });
  }
}
