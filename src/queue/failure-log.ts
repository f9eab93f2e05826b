// Lines about a write that keeps failing while its database is away. The training runner retries
// its progress writes every second; during a 40 s PostgreSQL outage that logged 40 identical error
// lines (thirty-fifth session). Now: one when the failures start, one a minute while they go on,
// and one when a write succeeds again, with how many failed and for how long.
import type { Logger } from '../logger.js';

export class FailureLog {
  private firstAt: number | null = null;
  private failures = 0;
  private loggedAt = 0;

  constructor(
    private readonly log: Logger,
    /** What fails, as a log message's subject ("recording training progress"). */
    private readonly what: string,
    private readonly fields: object = {},
    private readonly everyMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  failed(err: unknown): void {
    const t = this.now();
    this.failures++;
    if (this.firstAt === null) {
      this.firstAt = this.loggedAt = t;
      this.log.error({ ...this.fields, err }, `${this.what} failed; retrying`);
    } else if (t - this.loggedAt >= this.everyMs) {
      this.loggedAt = t;
      this.log.error({ ...this.fields, err, failures: this.failures }, `${this.what} still failing: ${this.failures} attempts in ${this.seconds(t)} s`);
    }
  }

  succeeded(): void {
    if (this.firstAt === null) return;
    const t = this.now();
    this.log.info({ ...this.fields, failures: this.failures }, `${this.what} works again, after ${this.failures} failed attempts in ${this.seconds(t)} s`);
    this.firstAt = null;
    this.failures = 0;
  }

  private seconds(t: number): number {
    return Math.round((t - this.firstAt!) / 1000);
  }
}
