// How a running job's steps reach the database: at most one write per STEP_WRITE_INTERVAL_MS,
// holding every step reported since the last one (JobOwner.steps). A write per step cost the
// worker's main thread 7-15 ms of CPU: a quarter to a third of a core at 0.35@32 (~35 steps/s)
// and CPU taken from the training threads at 224 px, where they use every core; on a shared
// PostgreSQL it was one transaction per step per worker. Every point is still written, in order;
// a poll of the job, the live curve and the cancel check of the row (JobOwner.steps says
// `cancelling`) lag by up to the interval.
//
// A write that fails (the database restarting, a failover) keeps its steps for the next one: a
// PostgreSQL restart during a 224 px job left a hole at step 505 in its loss curve. Steps that
// could not be written for RETRY_STEPS_FOR_MS are given up, so a write that can never succeed
// does not hold back every later step.
import type { StepRecord } from '../jobs/job-lifecycle.js';
import { WriteTimer } from './write-timer.js';

/** The longest a reported step waits before it is written. */
export const STEP_WRITE_INTERVAL_MS = 1000;
/** Most steps in one write: SQLite refuses a query of over 999 values (P2029), and a write reads its steps back. */
export const MAX_STEPS_PER_WRITE = 500;
/** How long unwritten steps are tried again before they are given up. */
export const RETRY_STEPS_FOR_MS = 5 * 60_000;

export interface StepWritesOptions {
  intervalMs?: number;
  /** Writes some steps (in order); runs only through `enqueue`, one at a time. */
  write: (steps: StepRecord[]) => Promise<void>;
  /** Puts work on the runner's message chain, so a write never overtakes the messages around it. */
  enqueue: (work: () => Promise<void>) => void;
  /** Told of steps given up after RETRY_STEPS_FOR_MS of failed writes. */
  onDropped?: (steps: StepRecord[], err: unknown) => void;
  retryForMs?: number;
}

export class StepWrites {
  private pending: StepRecord[] = [];
  private readonly timer: WriteTimer;
  /** performance.now() of the first failed write since the last one that succeeded. */
  private failingSince: number | null = null;

  constructor(private readonly o: StepWritesOptions) {
    this.timer = new WriteTimer(o.intervalMs ?? STEP_WRITE_INTERVAL_MS, () => o.enqueue(() => this.flush()));
  }

  /** A step the training thread reported: written within the interval (at once after a quiet spell). */
  add(step: StepRecord): void {
    this.pending.push(step);
    this.timer.schedule();
  }

  /**
   * Writes what is pending now, MAX_STEPS_PER_WRITE at a time; the runner calls it before any
   * other message, and at the end. A failed write throws and its steps stay pending.
   */
  async flush(): Promise<void> {
    this.timer.cancel();
    while (this.pending.length) {
      // Steps added while a write is under way go to the end of `pending`: the written ones are its head.
      const steps = this.pending.slice(0, MAX_STEPS_PER_WRITE);
      this.timer.writing();
      const began = performance.now();
      try {
        await this.o.write(steps);
        this.failingSince = null;
      } catch (err) {
        this.failingSince ??= began;
        if (performance.now() - this.failingSince >= (this.o.retryForMs ?? RETRY_STEPS_FOR_MS)) {
          this.pending.splice(0, steps.length);
          this.o.onDropped?.(steps, err);
        }
        throw err;
      }
      this.pending.splice(0, steps.length);
    }
  }
}
