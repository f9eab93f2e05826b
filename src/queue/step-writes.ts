// How a running job's steps reach the database: at most one write per STEP_WRITE_INTERVAL_MS,
// holding every step reported since the last one (JobOwner.steps). A write per step cost the
// worker's main thread 7-15 ms of CPU: a quarter to a third of a core at 0.35@32 (~35 steps/s)
// and CPU taken from the training threads at 224 px, where they use every core; on a shared
// PostgreSQL it was one transaction per step per worker. Every point is still written, in order;
// a poll of the job, the live curve and the cancel check of the row (JobOwner.steps says
// `cancelling`) lag by up to the interval.
import type { StepRecord } from '../jobs/job-lifecycle.js';

/** The longest a reported step waits before it is written. */
export const STEP_WRITE_INTERVAL_MS = 1000;

export interface StepWritesOptions {
  intervalMs?: number;
  /** Writes some steps (in order); runs only through `enqueue`, one at a time. */
  write: (steps: StepRecord[]) => Promise<void>;
  /** Puts work on the runner's message chain, so a write never overtakes the messages around it. */
  enqueue: (work: () => Promise<void>) => void;
}

export class StepWrites {
  private pending: StepRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastWrite = -Infinity;
  private readonly intervalMs: number;

  constructor(private readonly o: StepWritesOptions) {
    this.intervalMs = o.intervalMs ?? STEP_WRITE_INTERVAL_MS;
  }

  /** A step the training thread reported: written within the interval (at once after a quiet spell). */
  add(step: StepRecord): void {
    this.pending.push(step);
    if (this.timer) return;
    const due = Math.max(0, this.lastWrite + this.intervalMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.o.enqueue(() => this.flush());
    }, due);
  }

  /** Writes what is pending now; the runner calls it before any other message, and at the end. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.pending.length === 0) return;
    const steps = this.pending;
    this.pending = [];
    this.lastWrite = performance.now();
    await this.o.write(steps);
  }
}
