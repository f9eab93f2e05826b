// Memoises per-sample image bytes that are expensive to produce (decode, resize), within a byte
// budget shared by a data set's splits: the first epoch pays, later epochs read memory. Past the
// budget, samples are produced again per batch instead of growing the process without bound.

/** Shared, mutable: every cache of one data set draws from the same allowance. */
export interface ByteBudget {
  bytesLeft: number;
}

/**
 * A budget that threads share: the batch thread caches the training split while the training
 * thread caches the validation split, and together they stay within one allowance, as the two
 * splits did in one thread. Reads and writes are not atomic together: two threads caching at the
 * same instant can overshoot by one image, which a budget of hundreds of MB absorbs.
 */
export class SharedByteBudget implements ByteBudget {
  private readonly cell: Float64Array;

  /** A new budget of `bytes`, or the view of one another thread created (its `shared` buffer). */
  constructor(init: number | SharedArrayBuffer) {
    if (typeof init === 'number') {
      this.cell = new Float64Array(new SharedArrayBuffer(8));
      this.cell[0] = init;
    } else {
      this.cell = new Float64Array(init, 0, 1);
    }
  }

  get shared(): SharedArrayBuffer {
    return this.cell.buffer as SharedArrayBuffer;
  }

  get bytesLeft(): number {
    return this.cell[0];
  }

  set bytesLeft(v: number) {
    this.cell[0] = v;
  }
}

/**
 * Wraps `produce` so that concurrent requests for one index share one call, and results are kept
 * while the budget lasts. A rejected call is not cached: a later request tries again.
 */
export function cachedBytes(count: number, produce: (i: number) => Promise<Uint8Array>, budget: ByteBudget): (i: number) => Promise<Uint8Array> {
  const cache: (Uint8Array | undefined)[] = new Array(count);
  const inflight = new Map<number, Promise<Uint8Array>>();
  return (i) => {
    const hit = cache[i];
    if (hit) return Promise.resolve(hit);
    let p = inflight.get(i);
    if (!p) {
      p = produce(i).then(
        (bytes) => {
          if (budget.bytesLeft >= bytes.length) {
            cache[i] = bytes;
            budget.bytesLeft -= bytes.length;
          }
          inflight.delete(i);
          return bytes;
        },
        (err: unknown) => {
          inflight.delete(i);
          throw err;
        },
      );
      inflight.set(i, p);
    }
    return p;
  };
}
