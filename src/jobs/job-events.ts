// The record of what happened to a job, written by the job lifecycle (job-lifecycle.ts) inside
// the transaction of the write it describes, so an event exists exactly when its change does.
//
// Two things per write:
//   - the job's `revision` goes up by one, and a metric point the write touches takes the new
//     value: "points with a revision above N" is the metrics cursor (a score written later onto an
//     old step's point moves that point above every cursor handed out before);
//   - JobEvent rows: their autoincrement ids are the SSE event ids.
// Every lifecycle write first updates the job's row, which serialises writes to one job (a row
// lock on PostgreSQL, the single writer on SQLite). One job's events therefore commit in id order,
// so a reader that has seen id N and asks for ids above N misses none.
import type { Tx } from '../db/database.js';
import type { JobStatus } from './job-status.js';
import type { JobEventStatusData } from './job-view.js';

export const JOB_EVENT_TYPES = ['status', 'progress', 'metric', 'evaluation', 'warning'] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

export interface NewJobEvent {
  type: JobEventType;
  payload: object;
}

/** Tells listeners (SSE streams on any API replica) that `jobId` has new events. Best effort. */
export type JobWake = (jobId: string) => void;

/** Raises the job's revision by one and returns the new value. */
export async function bumpRevision(tx: Tx, jobId: string): Promise<number> {
  const row = await tx.trainingJob.update({ where: { id: jobId }, data: { revision: { increment: 1 } }, select: { revision: true } });
  return row.revision;
}

/** One INSERT however many events: their ids follow the order given. */
export async function recordEvents(tx: Tx, jobId: string, events: NewJobEvent[]): Promise<void> {
  if (events.length === 0) return;
  await tx.jobEvent.createMany({ data: events.map((e) => ({ jobId, type: e.type, payload: JSON.stringify(e.payload) })) });
}

/** The usual pair: a new revision and the events of one write. Returns the revision. */
export async function noteWrite(tx: Tx, jobId: string, events: NewJobEvent[]): Promise<number> {
  const revision = await bumpRevision(tx, jobId);
  await recordEvents(tx, jobId, events);
  return revision;
}

export const statusEvent = (status: JobStatus, error?: { code: string; message: string }): NewJobEvent => ({
  type: 'status',
  payload: { status, ...(error ? { error } : {}) } satisfies JobEventStatusData,
});
