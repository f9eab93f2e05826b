// Job states and the transitions between them. The database row is the truth; every change is a
// conditional update ("only if still in state X"), so the API and a worker racing on one job
// cannot both win.
//
//   queued -> running -> succeeded | failed | cancelled
//   queued -> cancelled                  (a queued job cancelled never starts)
//   running -> cancelling -> cancelled   (the worker stops between steps, keeps its checkpoint)
//   running -> queued                    (a worker shutting down hands the job back)
export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'cancelling'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

export function isTerminal(status: string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/** What cancel does from each state: the next state, or null when cancel is not allowed. */
export function cancelTarget(status: JobStatus): JobStatus | null {
  switch (status) {
    case 'queued':
      return 'cancelled';
    case 'running':
      return 'cancelling';
    case 'cancelling':
      return 'cancelling'; // already winding down: cancel again is a no-op, not a conflict
    default:
      return null;
  }
}
