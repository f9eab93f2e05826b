// What a failed training thread tells the job's owner: a code a client can act on, and a message.
import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { threadError } from '../../src/queue/thread-protocol.js';

describe('threadError', () => {
  it("a read-only disk (ext4 after a disk error) is the worker's WORKER_DISK_READ_ONLY, not the job's TRAINING_FAILED", () => {
    const erofs = Object.assign(new Error("EROFS: read-only file system, mkdir '/data/work/j/run/checkpoints/.tmp-32'"), { code: 'EROFS', syscall: 'mkdir' });
    const reported = threadError(erofs, 'TRAINING_FAILED');
    expect(reported.code).toBe('WORKER_DISK_READ_ONLY');
    expect(reported.message).toMatch(
      /^the worker's disk \(DATA_DIR\) turned read-only \(EROFS: read-only file system, mkdir .*\), most often after a disk error/,
    );
    expect(reported.cause).toBe(erofs.message);
  });
  it("a full disk is the worker's WORKER_DISK_FULL, saying what to do; other errors keep their code, a system call's takes the fallback", async () => {
    // A real ENOSPC, as a checkpoint write on a full DATA_DIR raised it (by hand: a 30 MB tmpfs).
    const full = (await writeFile('/dev/full', 'x').catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(full.code).toBe('ENOSPC');
    const reported = threadError(full, 'TRAINING_FAILED');
    expect(reported.code).toBe('WORKER_DISK_FULL');
    expect(reported.message).toMatch(
      /^the worker's disk \(DATA_DIR\) is full \(ENOSPC: no space left on device, write\); free space on that machine or lower training\.keepCheckpoints/,
    );
    // The error's own message, for the log line of a hand-back (the job is not failed then).
    expect(reported.cause).toBe('ENOSPC: no space left on device, write');
    expect(threadError(Object.assign(new Error('no images'), { code: 'DATASET_EMPTY' }), 'TRAINING_FAILED')).toEqual({
      code: 'DATASET_EMPTY',
      message: 'no images',
      cause: 'no images',
    });
    expect(threadError(new Error('boom'), 'EXPORT_FAILED')).toEqual({ code: 'EXPORT_FAILED', message: 'boom', cause: 'boom' });
    // Aborted before the first step (the data set's scan): the worker ends the job as its stop asked.
    const aborted = new AbortController();
    aborted.abort();
    expect(threadError(aborted.signal.reason, 'TRAINING_FAILED')).toMatchObject({ code: 'TRAINING_STOPPED' });
    // A system call's error is no code a client can look up: the fallback, with the call's message.
    const missing = (await readFile('/nonexistent/weights.bin').catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(missing.code).toBe('ENOENT');
    expect(threadError(missing, 'TRAINING_FAILED')).toEqual({
      code: 'TRAINING_FAILED',
      message: "ENOENT: no such file or directory, open '/nonexistent/weights.bin'",
      cause: "ENOENT: no such file or directory, open '/nonexistent/weights.bin'",
    });
  });
});
