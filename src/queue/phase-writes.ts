// How a running job's phase (reading its data set, an evaluation or the export: src/ml/train-api.ts Phase)
// reaches its row: a new task (or the phase's end) at once, the image counts of a task at most once
// per interval. An evaluation reports every batch: at 32 px, a batch of 64 images every few
// milliseconds; the row only needs to say where the job is.
import type { Phase } from '../ml/train-api.js';
import { STEP_WRITE_INTERVAL_MS } from './step-writes.js';
import { WriteTimer } from './write-timer.js';

export interface PhaseWritesOptions {
  intervalMs?: number;
  /** Writes the phase (null: the job is back at its steps); runs only through `enqueue`, one at a time. */
  write: (phase: Phase | null) => Promise<void>;
  /** Puts work on the runner's message chain, so a write never overtakes the messages around it. */
  enqueue: (work: () => Promise<void>) => void;
}

const sameTask = (a: Phase | null, b: Phase | null) => a === b || (a !== null && b !== null && a.name === b.name && a.task === b.task);
const samePhase = (a: Phase | null, b: Phase | null) => sameTask(a, b) && a?.done === b?.done && a?.total === b?.total;

export class PhaseWrites {
  private latest: Phase | null = null;
  /** What the row holds (as far as this worker wrote it). */
  private written: Phase | null = null;
  private readonly timer: WriteTimer;

  constructor(private readonly o: PhaseWritesOptions) {
    this.timer = new WriteTimer(o.intervalMs ?? STEP_WRITE_INTERVAL_MS, () => o.enqueue(() => this.flush()));
  }

  /** The phase the training thread reported. */
  report(phase: Phase | null): void {
    this.latest = phase;
    if (sameTask(phase, this.written)) return this.timer.schedule();
    this.timer.cancel();
    this.o.enqueue(() => this.flush());
  }

  /** Writes the newest phase unless the row holds it already. A failed write throws; the next report tries again. */
  async flush(): Promise<void> {
    this.timer.cancel();
    const phase = this.latest;
    if (samePhase(phase, this.written)) return;
    this.timer.writing();
    await this.o.write(phase);
    this.written = phase;
  }

  /** The runner is done: nothing more is written. */
  close(): void {
    this.timer.cancel();
  }
}
