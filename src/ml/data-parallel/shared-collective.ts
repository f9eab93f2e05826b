// The StepCollective of threads that share memory: a barrier on Atomics plus exchange areas in
// SharedArrayBuffers. Every rank makes the same sequence of calls in a step (the same layers in
// the same order), so the n-th exchange of one rank meets the n-th of every other.
//
// Exchanges alternate between two sets of slots: a rank writes set s again only two exchanges
// later, after the barrier of the exchange in between, which no rank passes before it has read
// set s. That is one barrier per exchange instead of two.
//
// A rank that fails inside a step calls abort(): the others stop waiting at their next barrier
// and throw TRAIN_PEER_FAILED with its message, instead of waiting forever for a rank that will
// not come.
import { combineMoments, sumInOrder } from './collective-math.js';
import type { ChannelStats, StepCollective } from './step-collective.js';

const COUNT = 0;
const GEN = 1;
const ABORT = 2;
const TEXT_LEN = 3;
const CTRL_INTS = 4;
const TEXT_BYTES = 2048;
/**
 * Busy-wait this long before sleeping in the kernel. On these VMs a sleeping thread took ~1 ms to
 * wake: with a 50 us spin the 2-thread 0.35@32 step ran at 181 img/s, with 1 ms at 260 (cores to
 * themselves). Past it a rank sleeps, so a rank that shares its core with another process (the
 * case where spinning hurts) gets the core back within a millisecond.
 */
const SPIN_MS = 1;
/**
 * The most one pass of a sleeping wait (100 ms asked) counts toward the stall timeout: a pass that
 * took longer spanned a pause of the whole process (SIGSTOP, a suspended VM, a debugger), which
 * stopped the peers too, and must not be taken for their stall when the process resumes.
 */
const MAX_WAIT_PASS_MS = 1000;

export class DataParallelError extends Error {
  constructor(
    readonly code: 'TRAIN_PEER_FAILED' | 'TRAIN_PEER_STALLED',
    message: string,
  ) {
    super(message);
    this.name = 'DataParallelError';
  }
}

/** Waits this long or longer are counted apart: the rank waited for a peer that lost its core, collected garbage or woke late. */
const LONG_WAIT_MS = 1;
const WAIT_FIELDS = 4;

/** One rank's time at barriers since the last reset (bench/train.ts --barrier-waits). */
export interface BarrierWaits {
  barriers: number;
  waitMs: number;
  /** Waits of LONG_WAIT_MS or more, and their time. */
  long: number;
  longMs: number;
}

/** The shared memory of one group of ranks; created by rank 0 and sent to the others. */
export interface CollectiveMemory {
  world: number;
  /** Float64s per rank per exchange (the widest exchange: BN statistics of the widest layer, 1 + 4 x channels). */
  slotLen: number;
  /** Float32s of the gradients of one rank. */
  gradLen: number;
  ctrl: SharedArrayBuffer;
  exch: SharedArrayBuffer;
  /** world slots of gradLen float32, then one slot for the sum. */
  grads: SharedArrayBuffer;
  /** Per rank, its BarrierWaits (written by that rank only). */
  waits: SharedArrayBuffer;
}

export function allocateCollectiveMemory(world: number, slotLen: number, gradLen: number): CollectiveMemory {
  return {
    world,
    slotLen,
    gradLen,
    ctrl: new SharedArrayBuffer(CTRL_INTS * 4 + TEXT_BYTES),
    exch: new SharedArrayBuffer(2 * world * slotLen * 8),
    grads: new SharedArrayBuffer((world + 1) * gradLen * 4),
    waits: new SharedArrayBuffer(world * WAIT_FIELDS * 8),
  };
}

export class SharedCollective implements StepCollective {
  readonly world: number;
  batchScale = 1;
  private readonly ctrl: Int32Array;
  private readonly text: Uint8Array;
  private readonly exch: Float64Array;
  private readonly grads: Float32Array;
  private readonly waits: Float64Array;
  private seq = 0;
  private idle: (() => boolean) | null = null;

  constructor(
    private readonly mem: CollectiveMemory,
    readonly rank: number,
    private readonly timeoutMs = 300_000,
    /** The stall timeout's clock (a test stands in a paused process). */
    private readonly now: () => number = () => performance.now(),
  ) {
    this.world = mem.world;
    this.ctrl = new Int32Array(mem.ctrl, 0, CTRL_INTS);
    this.text = new Uint8Array(mem.ctrl, CTRL_INTS * 4, TEXT_BYTES);
    this.exch = new Float64Array(mem.exch);
    this.grads = new Float32Array(mem.grads);
    this.waits = new Float64Array(mem.waits);
  }

  /** This rank trains on `localRows` of a batch of `totalRows`. */
  setBatch(localRows: number, totalRows: number): void {
    this.batchScale = totalRows / localRows;
  }

  /**
   * Work for this rank's waits at the barriers of the step in progress (rendering its rows of the
   * next step), done a piece at a time: `work` does one piece and returns false when none is left.
   * A rank waits ~15% of a 224 px step at the step's ~120 barriers, and work done there measured
   * free, where the same work in a thread of its own cost the step 1.5% and at the step's start
   * 0.4% (README, issue 12). An error from `work` fails the step like any error in it. null: none.
   */
  setIdleWork(work: (() => boolean) | null): void {
    this.idle = work;
  }

  /**
   * Waits until every rank has arrived. Throws when a rank aborted or none came for timeoutMs.
   * Time spent on idle work counts as waiting.
   */
  barrier(): void {
    const t0 = performance.now();
    try {
      this.arrive();
    } finally {
      const ms = performance.now() - t0;
      const w = this.waits;
      const at = this.rank * WAIT_FIELDS;
      w[at]++;
      w[at + 1] += ms;
      if (ms >= LONG_WAIT_MS) {
        w[at + 2]++;
        w[at + 3] += ms;
      }
    }
  }

  /**
   * Every rank's barrier waits since the last reset, in rank order (read between steps). A peer
   * records a barrier just after leaving it, so right after a step its last one may still be
   * missing.
   */
  barrierWaits(): BarrierWaits[] {
    const w = this.waits;
    return Array.from({ length: this.world }, (_, r) => {
      const at = r * WAIT_FIELDS;
      return { barriers: w[at], waitMs: w[at + 1], long: w[at + 2], longMs: w[at + 3] };
    });
  }

  /** Zeroes every rank's barrier waits (between steps). */
  resetBarrierWaits(): void {
    this.waits.fill(0);
  }

  private arrive(): void {
    const c = this.ctrl;
    this.throwIfAborted();
    const gen = Atomics.load(c, GEN);
    if (Atomics.add(c, COUNT, 1) === this.world - 1) {
      Atomics.store(c, COUNT, 0);
      Atomics.add(c, GEN, 1);
      Atomics.notify(c, GEN);
      return;
    }
    while (this.idle && Atomics.load(c, GEN) === gen) {
      if (!this.idle()) this.idle = null;
    }
    const t0 = this.now();
    let last = t0;
    while (last - t0 < SPIN_MS) {
      for (let i = 0; i < 64; i++) if (Atomics.load(c, GEN) !== gen) return;
      last = this.now();
    }
    let waited = Math.min(last - t0, MAX_WAIT_PASS_MS);
    while (Atomics.load(c, GEN) === gen) {
      this.throwIfAborted();
      Atomics.wait(c, GEN, gen, 100);
      const now = this.now();
      waited += Math.min(now - last, MAX_WAIT_PASS_MS);
      last = now;
      if (waited > this.timeoutMs) {
        this.abort(`rank ${this.rank} waited ${this.timeoutMs} ms at a barrier`);
        throw new DataParallelError('TRAIN_PEER_STALLED', `a training thread did not reach the step's synchronisation point within ${this.timeoutMs} ms`);
      }
    }
  }

  /** Marks the group failed (the first message wins) and wakes every waiting rank. */
  abort(message: string): void {
    if (Atomics.compareExchange(this.ctrl, ABORT, 0, 1) === 0) {
      const bytes = new TextEncoder().encode(message).subarray(0, TEXT_BYTES);
      this.text.set(bytes);
      Atomics.store(this.ctrl, TEXT_LEN, bytes.length);
    }
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
  }

  get aborted(): boolean {
    return Atomics.load(this.ctrl, ABORT) !== 0;
  }

  private throwIfAborted(): void {
    if (!this.aborted) return;
    const len = Atomics.load(this.ctrl, TEXT_LEN);
    const why = new TextDecoder().decode(this.text.slice(0, len));
    throw new DataParallelError('TRAIN_PEER_FAILED', `a training thread failed: ${why}`);
  }

  /**
   * Every rank's `len` values, in rank order, after `write` filled this rank's. The views are valid
   * until this rank's next exchange.
   */
  exchange(len: number, write: (slot: Float64Array) => void): Float64Array[] {
    if (len > this.mem.slotLen) throw new Error(`exchange of ${len} values exceeds the slot of ${this.mem.slotLen}`);
    const set = (this.seq++ & 1) * this.world * this.mem.slotLen;
    const at = (r: number) => this.exch.subarray(set + r * this.mem.slotLen, set + r * this.mem.slotLen + len);
    write(at(this.rank));
    this.barrier();
    return Array.from({ length: this.world }, (_, r) => at(r));
  }

  /** Every rank's rows and `arrays` per-channel arrays of equal length, as [rows, arrays] views in rank order. */
  private exchangeChannels(rows: number, arrays: ArrayLike<number>[]): Array<{ rows: number; arrays: Float64Array[] }> {
    const c = arrays[0].length;
    const parts = this.exchange(1 + arrays.length * c, (s) => {
      s[0] = rows;
      arrays.forEach((a, i) => s.set(a, 1 + i * c));
    });
    return parts.map((p) => ({ rows: p[0], arrays: arrays.map((_, i) => p.subarray(1 + i * c, 1 + (i + 1) * c)) }));
  }

  bnMoments(local: ChannelStats): ChannelStats {
    const parts = this.exchangeChannels(local.rows, [local.mean, local.m2, local.min, local.max]);
    const { rows, mean, m2 } = combineMoments(parts.map(({ rows, arrays: [mean, m2] }) => ({ rows, mean, m2 })));
    const min = Float64Array.from(parts[0].arrays[2]);
    const max = Float64Array.from(parts[0].arrays[3]);
    for (const { arrays } of parts.slice(1)) {
      for (let j = 0; j < min.length; j++) {
        // Math.min/max propagate NaN, as the Min and Max kernels do.
        min[j] = Math.min(min[j], arrays[2][j]);
        max[j] = Math.max(max[j], arrays[3][j]);
      }
    }
    return { rows, mean, m2, min, max };
  }

  bnGradSums(rows: number, sDy: Float64Array, sDyXc: Float64Array): { rows: number; sDy: Float64Array; sDyXc: Float64Array } {
    const parts = this.exchangeChannels(rows, [sDy, sDyXc]);
    return {
      rows: sumInOrder(parts.map((p) => [p.rows]))[0],
      sDy: sumInOrder(parts.map((p) => p.arrays[0])),
      sDyXc: sumInOrder(parts.map((p) => p.arrays[1])),
    };
  }

  minMax(min: number, max: number): { min: number; max: number } {
    const parts = this.exchange(2, (s) => {
      s[0] = min;
      s[1] = max;
    });
    // Math.min/max propagate NaN, as the Min and Max kernels do.
    return { min: Math.min(...parts.map((p) => p[0])), max: Math.max(...parts.map((p) => p[1])) };
  }

  /** The sum over ranks of one number (the step's loss), in rank order. */
  sum(value: number): number {
    return sumInOrder(this.exchange(1, (s) => (s[0] = value)))[0];
  }

  /**
   * Sums every rank's gradients (this rank's in `fill` order, `gradLen` float32 in all) and returns
   * the sum, valid until the next allReduceGrads. Each rank adds up its 1/world of the elements
   * (in rank order, so the result does not depend on who added), then all read the whole sum.
   */
  allReduceGrads(fill: (own: Float32Array) => void): Float32Array {
    const n = this.mem.gradLen;
    const slot = (r: number) => this.grads.subarray(r * n, (r + 1) * n);
    fill(slot(this.rank));
    this.barrier();
    const sum = slot(this.world);
    const start = Math.floor((this.rank * n) / this.world);
    const end = Math.floor(((this.rank + 1) * n) / this.world);
    const first = slot(0);
    sum.set(first.subarray(start, end), start);
    for (let r = 1; r < this.world; r++) {
      const other = slot(r);
      for (let i = start; i < end; i++) sum[i] += other[i];
    }
    this.barrier();
    return sum;
  }
}
