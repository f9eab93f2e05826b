// Whether this worker's disk has room for a job. A worker whose DATA_DIR filled up (other files on
// the machine, another worker process beside it) used to take every job on the queue and fail each
// at its first checkpoint with WORKER_DISK_FULL: one full machine drained a fleet's queue into
// failures. Now it leaves jobs on the queue while its free space is short, and takes jobs again
// once there is room (Elasticsearch's disk watermarks do the same for shards).
import fs from 'node:fs';
import path from 'node:path';
import type { TrainingConfig } from '../config/training-config.js';
import { estimateJob } from '../jobs/job-admission.js';

export interface DiskSpace {
  /** Bytes an unprivileged process may still write. */
  freeBytes: number;
  totalBytes: number;
}

export async function diskSpace(dir: string): Promise<DiskSpace> {
  await fs.promises.mkdir(dir, { recursive: true });
  const s = await fs.promises.statfs(dir);
  return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
}

/** Makes `dir` and writes a file there (removed again); throws what the disk said if it cannot. */
export async function probeWritable(dir: string): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true });
  const probe = path.join(dir, `.write-probe-${process.pid}`);
  await fs.promises.writeFile(probe, 'qatserve');
  await fs.promises.rm(probe, { force: true });
}

/** `dir`'s disk, once a file could be written there: a worker checks its DATA_DIR so at start. */
export async function writableDiskSpace(dir: string): Promise<DiskSpace> {
  await probeWritable(dir);
  return diskSpace(dir);
}

const errnoOf = (err: unknown): unknown => (err as { code?: unknown } | null)?.code;

/** The error a write to a full disk (or an exhausted quota) throws. */
export function isDiskFull(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * The error a write to a read-only filesystem throws: ext4 mounted `errors=remount-ro` (Debian's and
 * most clouds' default) turns read-only after a disk error, under a running worker. Such a worker
 * failed its job, then claimed every other job and failed to start each, burning their attempts.
 */
export function isDiskReadOnly(err: unknown): boolean {
  return errnoOf(err) === 'EROFS';
}

/** What happened to a disk, in words for "DATA_DIR ..." (the worker's log and its waiting reason). */
export const DISK_TROUBLE = { full: 'filled up', readOnly: 'turned read-only' } as const;

/** What a write's error says happened to the disk (DISK_TROUBLE); null for any other error. */
export function diskTrouble(err: unknown): (typeof DISK_TROUBLE)[keyof typeof DISK_TROUBLE] | null {
  return isDiskFull(err) ? DISK_TROUBLE.full : isDiskReadOnly(err) ? DISK_TROUBLE.readOnly : null;
}

/**
 * Scratch bytes the job may take on the worker: admission's estimate (checkpoints kept, one being
 * written, the model) plus the checkpoint a resume or `init.fromJob` downloads first. An image
 * folder counts as its largest class count (the worker has not read it yet); the estimate is an
 * upper envelope (a 1.0@96 job checkpointing every 2 steps peaked at 37 MiB of its 56).
 */
export function diskNeedBytes(config: TrainingConfig): number {
  const e = estimateJob(config);
  return e.diskBytes + e.checkpointBytes;
}

export type Room =
  | { kind: 'room' }
  /** Short now; another worker may take the job, this one waits for `wantBytes` free. */
  | { kind: 'wait'; wantBytes: number }
  /** The whole disk is smaller than the job and the reserve: waiting cannot help on this machine. */
  | { kind: 'never'; wantBytes: number };

export function roomFor(space: DiskSpace, needBytes: number, reserveBytes: number): Room {
  const wantBytes = needBytes + reserveBytes;
  if (space.freeBytes >= wantBytes) return { kind: 'room' };
  return space.totalBytes < wantBytes ? { kind: 'never', wantBytes } : { kind: 'wait', wantBytes };
}

const mib = (b: number) => `${Math.round(b / 2 ** 20)} MiB`;

export function roomMessage(space: DiskSpace, needBytes: number, reserveBytes: number): string {
  return (
    `the worker's DATA_DIR has ${mib(space.freeBytes)} free of ${mib(space.totalBytes)}; ` +
    `the job needs up to ${mib(needBytes)} (checkpoints and model) and WORKER_DISK_RESERVE_MB keeps ${mib(reserveBytes)} free`
  );
}

/**
 * Resolves once `dir` has `wantBytes` free and takes a write (a read-only filesystem still reports
 * free space), checking every `intervalMs` (a statfs is microseconds), or with false when `signal`
 * aborts first.
 */
export function waitForRoom(dir: string, wantBytes: number, intervalMs: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const timer = setInterval(() => {
      writableDiskSpace(dir).then(
        (s) => {
          if (s.freeBytes >= wantBytes) done(true);
        },
        () => {},
      );
    }, intervalMs);
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onAbort = () => done(false);
    signal.addEventListener('abort', onAbort);
  });
}
