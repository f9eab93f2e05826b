// The images/s a job reports (progress.imagesPerSecond, metric points): the rate over the last
// few steps, each step timed from asking for its batch to its loss, so the figure means what
// bench/train.ts's does (images over the time of consecutive steps). One step alone swings with
// garbage collection and the other processes on the machine; the run's first step also pays
// one-time kernel and memory set-up, which bench/train.ts leaves out as its warm-up.

/** Steps a job's reported rate averages over (the trainer's StepRate). */
export const STEP_RATE_WINDOW = 10;

export class StepRate {
  private readonly images: number[] = [];
  private readonly ms: number[] = [];
  private seen = 0;

  constructor(private readonly window = STEP_RATE_WINDOW) {
    if (!Number.isInteger(window) || window < 1) throw new RangeError(`StepRate window ${window}`);
  }

  /** Record one step of `images` that took `ms` (data wait + compute); returns the current rate. */
  add(images: number, ms: number): number {
    const t = Math.max(ms, 1e-3);
    this.seen++;
    // The first step is reported alone (there is nothing else yet) and then left out.
    if (this.seen === 1) return (images * 1000) / t;
    this.images.push(images);
    this.ms.push(t);
    if (this.images.length > this.window) {
      this.images.shift();
      this.ms.shift();
    }
    const n = this.images.reduce((a, b) => a + b, 0);
    const total = this.ms.reduce((a, b) => a + b, 0);
    return (n * 1000) / total;
  }
}
