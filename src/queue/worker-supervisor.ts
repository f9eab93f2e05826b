// `qatserve serve` runs its training worker as a child process and restarts it when it dies.
// Restarts back off exponentially (1 s, 2 s, 4 s ... capped), so a worker that crashes at start
// (a broken database URL, a full disk) does not spin; one that then runs for a while counts as
// recovered and its next crash starts again from the shortest delay. The state is what /readyz
// and /metrics report for the worker.
import type { ChildProcess } from 'node:child_process';
import { logParts, type Logger } from '../logger.js';

export interface BackoffPolicy {
  /** Delay before the first restart. */
  baseMs: number;
  /** No delay grows beyond this. */
  maxMs: number;
  /** A worker that ran this long before dying was healthy: the backoff starts over. */
  healthyAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 60_000, healthyAfterMs: 120_000 };

/** Delay before restart number `crashes` of a run of consecutive crashes (1-based). */
export function restartDelayMs(crashes: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  return Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, Math.min(crashes - 1, 30)));
}

export interface WorkerStatus {
  state: 'running' | 'restarting' | 'stopped';
  /** Restarts since `serve` started. */
  restarts: number;
  /** Crashes in a row without a healthy run in between. */
  consecutiveCrashes: number;
  /** How the last worker ended ("exit code 1", "signal SIGKILL"), or null. */
  lastExit: string | null;
  /** The current (or last) backoff delay. */
  backoffMs: number;
  /** When the next start is due, while restarting. */
  nextStartAt: Date | null;
}

const stderrLine = (a: object | string, b?: string): void => console.error(logParts(a, b).msg);
export class WorkerSupervisor {
  private child: ChildProcess | null = null;
  private startedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopping = false;
  private readonly s: WorkerStatus = { state: 'stopped', restarts: 0, consecutiveCrashes: 0, lastExit: null, backoffMs: 0, nextStartAt: null };

  constructor(
    private readonly spawnWorker: () => ChildProcess,
    private readonly policy: BackoffPolicy = DEFAULT_BACKOFF,
    // `serve` has no pino logger of its own before the API starts: plain stderr lines.
    private readonly log: Logger = { info: stderrLine, warn: stderrLine, error: stderrLine },
  ) {}

  start(): void {
    if (this.stopping) return;
    this.timer = null;
    this.s.nextStartAt = null;
    const child = this.spawnWorker();
    this.child = child;
    this.startedAt = Date.now();
    this.s.state = 'running';
    child.once('exit', (code, signal) => this.exited(child, code, signal));
  }

  status(): WorkerStatus {
    return { ...this.s };
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    this.child = null;
    this.s.lastExit = signal ? `signal ${signal}` : `exit code ${code}`;
    if (this.stopping) {
      this.s.state = 'stopped';
      return;
    }
    const ranMs = Date.now() - this.startedAt;
    this.s.consecutiveCrashes = ranMs >= this.policy.healthyAfterMs ? 1 : this.s.consecutiveCrashes + 1;
    this.s.backoffMs = restartDelayMs(this.s.consecutiveCrashes, this.policy);
    this.s.restarts++;
    this.s.state = 'restarting';
    this.s.nextStartAt = new Date(Date.now() + this.s.backoffMs);
    // Its job, if any, stays locked until the lock expires; a worker picks it up then.
    const message = `worker ${this.s.lastExit} after ${(ranMs / 1000).toFixed(1)} s (crash ${this.s.consecutiveCrashes} in a row); restarting in ${(this.s.backoffMs / 1000).toFixed(0)} s`;
    const fields = { exit: this.s.lastExit, consecutiveCrashes: this.s.consecutiveCrashes, backoffMs: this.s.backoffMs };
    if (this.s.consecutiveCrashes > 1) this.log.error(fields, message);
    else this.log.warn(fields, message);
    this.timer = setTimeout(() => this.start(), this.s.backoffMs);
  }

  /** Stops restarting, sends `signal` to the running worker and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.s.state = 'stopped';
      return;
    }
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill(signal);
    await gone;
    this.s.state = 'stopped';
  }
}
