// The timing both of a running job's throttled writes keep (step-writes.ts, phase-writes.ts): at
// most one write per interval, at once after a quiet spell. The write itself runs on the runner's
// message chain, which `due` puts it on.
export class WriteTimer {
  private timer: NodeJS.Timeout | null = null;
  private lastWrite = -Infinity;

  constructor(
    private readonly intervalMs: number,
    private readonly due: () => void,
  ) {}

  /** Calls `due` once an interval has passed since the last write began (at once after a quiet spell); one call at a time. */
  schedule(): void {
    if (this.timer) return;
    const wait = Math.max(0, this.lastWrite + this.intervalMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.due();
    }, wait);
  }

  /** A write begins now: a scheduled call is dropped, and the next is due an interval from now. */
  writing(): void {
    this.cancel();
    this.lastWrite = performance.now();
  }

  cancel(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
