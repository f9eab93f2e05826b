// An image folder lives on the workers' own disks (machines share no disk), so in a fleet some
// workers may have a job's folder and others not. Until the thirty-second session the worker that
// happened to take such a job failed it with DATASET_NOT_FOUND, though another worker had the
// folder. Now a worker without the folder leaves the job on the queue, untouched, for the others,
// and notes in Redis that it lacks it; the job fails only when every live worker has said so.
import type { Redis } from 'ioredis';
import type { TrainingConfig } from '../config/training-config.js';
import { DatasetPathError } from '../data/errors.js';
import { resolveUnderRoot } from '../data/safe-path.js';

/** How long a job left for a worker with its folder sits out before a worker takes it again. */
export const ELSEWHERE_RETRY_MS = 10_000;
/** The note of which workers lack a job's folder outlives any wait (it is removed when the job starts). */
const LACKING_TTL_S = 24 * 3600;

/**
 * Control signal: this worker leaves the job on the queue for another live worker, which has its
 * image folder (this one lacks it) or room for it (this one's memory budget is too small).
 */
export class ElsewhereError extends Error {
  readonly code = 'LEFT_FOR_ANOTHER_WORKER';
  constructor(
    message: string,
    /** When the queue offers the job again (see handBackDelay). */
    readonly retryInMs: number,
  ) {
    super(message);
    this.name = 'ElsewhereError';
  }
}

/**
 * The Bull backoff for a job's retries: a job left for a worker with its folder comes back when the
 * worker that left it said (at once the first time, while that worker stands aside; then after
 * ELSEWHERE_RETRY_MS, else it would take the job straight back, over and over, while the one with
 * the folder is busy); every other hand-back (shutdown, disk) goes back to the queue at once.
 */
export function handBackDelay(_attemptsMade: number, err: unknown): number {
  return err instanceof ElsewhereError ? err.retryInMs : 0;
}

/** The image folder of the config when this worker's DATA_ROOT does not have it; else null. */
export async function missingFolder(dataRoot: string, config: TrainingConfig): Promise<string | null> {
  if (config.dataset.type !== 'imagefolder') return null;
  try {
    await resolveUnderRoot(dataRoot, config.dataset.path);
    return null;
  } catch (err) {
    // An invalid path is the job's own fault, on every worker alike: its run fails it as before.
    if (err instanceof DatasetPathError && err.code === 'DATASET_NOT_FOUND') return config.dataset.path;
    return null;
  }
}

const lackingKey = (queuePrefix: string, jobId: string) => `${queuePrefix}:lacks-dataset:${jobId}`;

/** Records that `workerId` lacks the job's folder; returns every worker that has said so. */
export async function noteLacking(redis: Redis, queuePrefix: string, jobId: string, workerId: string): Promise<Set<string>> {
  const key = lackingKey(queuePrefix, jobId);
  const replies = await redis.multi().sadd(key, workerId).expire(key, LACKING_TTL_S).smembers(key).exec();
  const members = replies?.[2]?.[1];
  return new Set(Array.isArray(members) ? (members as string[]) : [workerId]);
}

/** Which workers have said they lack the job's folder (the live ones count: see `mayHoldFolder`). */
export async function workersLacking(redis: Redis, queuePrefix: string, jobId: string): Promise<Set<string>> {
  return new Set(await redis.smembers(lackingKey(queuePrefix, jobId)));
}

/** Drops the note once a worker with the folder takes the job. */
export async function forgetLacking(redis: Redis, queuePrefix: string, jobId: string): Promise<void> {
  await redis.del(lackingKey(queuePrefix, jobId));
}

/**
 * The live workers, other than `selfId`, that have not said they lack the folder: the job waits
 * for one of them. None: no live worker can train it. A worker that starts later is asked in turn
 * when it takes the job.
 */
export function mayHoldFolder(live: ReadonlyArray<{ id: string }>, lacking: ReadonlySet<string>, selfId: string): string[] {
  return live.map((w) => w.id).filter((id) => id !== selfId && !lacking.has(id));
}
