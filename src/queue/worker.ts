// `qatserve worker`: the process that trains. It is the only entry point that brings Prisma and
// the ML code together (the ML code itself runs in a worker thread, see training-thread.ts).
//
// One job at a time. Bull's lock is renewed by this process's event loop, which stays free while
// the thread computes. If this process dies, the lock expires, Bull's stalled check (in any
// worker) re-queues the job and the next worker resumes it from its newest checkpoint.
// SIGTERM/SIGINT: stop taking jobs, checkpoint the running one, hand it back to the queue, exit.
import pino from 'pino';
import type { Settings } from '../config/settings.js';
import { openDatabase } from '../db/database.js';
import { subscribeCancels } from './cancel-bus.js';
import { startJob, WorkerShutdownError, type RunningJob } from './job-runner.js';
import { openTrainingQueue } from './training-queue.js';

/** Pause before handing back a job that hit an infrastructure error. */
const RETRY_PAUSE_MS = 5000;

export interface WorkerHandle {
  /** Graceful stop: checkpoint and hand back the running job, close connections. */
  stop(): Promise<void>;
}

export async function runWorker(settings: Settings): Promise<WorkerHandle> {
  const log = pino({ level: settings.logLevel, base: { role: 'worker', pid: process.pid } });
  const db = openDatabase(settings.databaseUrl);
  const queue = openTrainingQueue(settings);
  queue.on('error', (err) => log.error({ err }, 'queue error'));
  let current: RunningJob | null = null;
  let stopping = false;

  const cancels = await subscribeCancels(settings.redisUrl, settings.queuePrefix, (jobId) => {
    if (current?.jobId === jobId) {
      log.info({ jobId }, 'cancel requested');
      current.abort('cancel');
    }
  });

  // A job that stalled more often than allowed is failed by Bull; the row must say so too.
  queue.on('failed', (job, err) => {
    if (!/stalled more than allowable limit/.test(err?.message ?? '')) return;
    if (!job) {
      log.error({ err }, 'Bull failed a stalled job it no longer holds; its row cannot be marked');
      return;
    }
    void db.prisma.trainingJob
      .updateMany({
        where: { id: job.data.jobId, status: { in: ['queued', 'running', 'cancelling'] } },
        data: { status: 'failed', errorCode: 'WORKER_LOST', errorMessage: err.message, finishedAt: new Date() },
      })
      .catch((e) => log.error({ err: e }, 'could not record a stalled job'));
  });
  queue.on('stalled', (job) => log.warn({ jobId: job.data.jobId }, 'job stalled (its worker died); re-queued'));

  void queue.process(1, async (bullJob) => {
    const { jobId } = bullJob.data;
    current = startJob(
      {
        prisma: db.prisma,
        artifactsDir: settings.artifactsDir,
        dataRoot: settings.dataRoot,
        log,
        threadUrl: new URL('./training-thread.js', import.meta.url),
      },
      jobId,
    );
    if (stopping) current.abort('shutdown');
    try {
      let outcome;
      try {
        outcome = await current.done;
      } catch (err) {
        // Not the job's fault (database or disk trouble): Bull retries it, but not in a hot loop.
        log.error({ jobId, err }, 'job could not be run; retrying later');
        await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
        throw err;
      }
      log.info({ jobId, outcome }, 'job left the worker');
      if (outcome === 'handed-back') throw new WorkerShutdownError(jobId);
      if (outcome === 'failed') {
        // A real failure: never retried (the attempts budget is for hand-backs only).
        await bullJob.discard();
        throw new Error(`job ${jobId} failed`);
      }
      return { outcome };
    } finally {
      current = null;
    }
  });
  log.info({ queuePrefix: settings.queuePrefix, lockDurationMs: settings.lockDurationMs }, 'worker waiting for jobs');

  let stopped: Promise<void> | null = null;
  return {
    stop() {
      stopped ??= (async () => {
        stopping = true;
        // Stop fetching new jobs at once; then let the running one checkpoint and come back.
        await queue.pause(true, true).catch(() => {});
        current?.abort('shutdown');
        await queue.close();
        await cancels.close();
        await db.close();
        log.info('worker stopped');
      })();
      return stopped;
    },
  };
}
