// Job states. The transitions between them, and every write that makes one, live in
// src/jobs/job-lifecycle.ts:
//
//   queued -> running -> succeeded | failed | cancelled
//   queued -> cancelled                  (a queued job cancelled never starts)
//   running -> cancelling -> cancelled   (the worker stops between steps, keeps its checkpoint)
//   running -> queued                    (a worker shutting down hands the job back)
//   running -> running                   (another worker takes over; the first is fenced out)
//   failed | cancelled -> queued         (its user resumes it: from its newest checkpoint)
export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'cancelling'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

/** Queued, running or cancelling: what a key's MAX_ACTIVE_JOBS_PER_KEY counts, and the reconciler looks at. */
export const UNFINISHED_STATUSES: readonly JobStatus[] = JOB_STATUSES.filter((s) => !TERMINAL_STATUSES.includes(s));

export function isTerminal(status: string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}
