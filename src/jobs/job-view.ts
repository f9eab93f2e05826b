// What the API shows of a job, its metrics and its model. These zod schemas are the response
// contract: routes build them, tests parse responses with them, and openapi.yaml is generated
// from them.
import { z } from 'zod';
import { TrainingConfig } from '../config/training-config.js';
import { rowToRecord, type ModelRow } from '../db/model-rows.js';
import { JOB_STATUSES, type JobStatus } from './job-status.js';
import { ModelSummary, toModelSummary } from './model-view.js';
import { PageQuery } from './page-cursor.js';
import type { Phase, TrainStartInfo } from '../ml/train-api.js';
import { parseJsonAs } from '../parse-json.js';

export const JobStatusSchema = z.enum(JOB_STATUSES);

/** A job's model: the same summary /v1/models lists (src/jobs/model-view.ts). */
export const ModelView = ModelSummary;
export type ModelView = ModelSummary;

/**
 * What a running job does between steps (src/ml/train-api.ts Phase): reading its data set before
 * the first, an evaluation of the validation split after an epoch, or the export of its int8
 * model, with the images done so far.
 */
export const JobPhase = z.object({
  /**
   * `preparing`: the data set read before the first step (an image folder's headers); `evaluating`:
   * validation accuracy after an epoch (and the last step); `exporting`: the int8 file built,
   * verified, scored and written.
   */
  name: z.enum(['preparing', 'evaluating', 'exporting']),
  /** The part under way, in words: "int8 top-1 on the validation split". */
  task: z.string(),
  /** Images done and in all for this task; null for a task not counted in images. */
  done: z.number().int().nullable(),
  total: z.number().int().nullable(),
}) satisfies z.ZodType<Phase>;
export type JobPhase = z.infer<typeof JobPhase>;

/** Class names a job's view lists (the model's manifest has them all): enough to tell a folder read right. */
export const CLASS_NAMES_SHOWN = 20;

/** What the worker made of the job's data set when training started. */
export const JobDataset = z.object({
  /** In words: "imagefolder pets: 37 classes, 3312 train / 368 val (0.1 held out)", or "(valid/; test/ unread)". */
  description: z.string(),
  classes: z.number().int(),
  /** The first CLASS_NAMES_SHOWN (20) class names, in label order. */
  classNames: z.array(z.string()),
  trainImages: z.number().int(),
  valImages: z.number().int(),
});
export type JobDataset = z.infer<typeof JobDataset>;

/** The job's JobDataset from what training reported at its start. */
export function toJobDataset(info: Pick<TrainStartInfo, 'dataset' | 'classes' | 'numTrain' | 'numVal'>): JobDataset {
  return {
    description: info.dataset,
    classes: info.classes.length,
    classNames: info.classes.slice(0, CLASS_NAMES_SHOWN),
    trainImages: info.numTrain,
    valImages: info.numVal,
  };
}

export const JobView = z.object({
  id: z.string(),
  name: z.string(),
  status: JobStatusSchema,
  config: TrainingConfig,
  progress: z.object({
    epoch: z.number().int(),
    step: z.number().int(),
    totalSteps: z.number().int().nullable(),
    imagesPerSecond: z.number().nullable(),
    /** Null while the job trains (and when it is not running); a running job's evaluation or export otherwise. */
    phase: JobPhase.nullable(),
    /**
     * While the job trains: when its last step should be done, at the pace of its steps since this
     * run (re)started, the evaluations between epochs included once one has run; the final
     * evaluation and the export follow. Null before a run's first step and once the last is done.
     */
    trainingEndsAt: z.iso.datetime().nullable(),
  }),
  /** The training backend the worker used (tensorflow, wasm or cpu); null before it started. */
  backend: z.string().nullable(),
  /** What the worker made of the data set (classes, images); null until training starts. */
  dataset: JobDataset.nullable(),
  /** Times a worker started this job (a resume after a worker died counts again). */
  attempts: z.number().int(),
  warnings: z.number().int(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  createdAt: z.iso.datetime(),
  startedAt: z.iso.datetime().nullable(),
  finishedAt: z.iso.datetime().nullable(),
  updatedAt: z.iso.datetime(),
  model: ModelView.nullable(),
});
export type JobView = z.infer<typeof JobView>;

export const JobList = z.object({
  jobs: z.array(JobView),
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  nextCursor: z.string().nullable(),
});

export const MetricPointView = z.object({
  step: z.number().int(),
  epoch: z.number().int(),
  loss: z.number().nullable(),
  learningRate: z.number().nullable(),
  imagesPerSecond: z.number().nullable(),
  /** Validation accuracy, present at epoch ends. */
  top1: z.number().nullable(),
  top5: z.number().nullable(),
  floatTop1: z.number().nullable(),
  /** The job's revision of the last write to this point: pass the largest seen as `cursor`. */
  revision: z.number().int(),
});
export type MetricPointView = z.infer<typeof MetricPointView>;

export const MetricsPage = z.object({
  points: z.array(MetricPointView),
  /** Paging by `after` (step): pass as `after` for the next page; null when there are no more points yet (and when paging by `cursor`). */
  nextAfter: z.number().int().nullable(),
  /**
   * Paging by `cursor` (revision): pass as `cursor` next time, whether or not this page was full.
   * Points come in revision order, and a point whose scores arrive later comes again with them.
   * Null when paging by `after`.
   */
  nextCursor: z.number().int().nullable(),
  /** Whether more points past this page exist right now (either kind of paging). */
  more: z.boolean(),
});
export type MetricsPage = z.infer<typeof MetricsPage>;

export const CurveQuery = z.strictObject({
  /** About how many points to sample: every ceil(steps / points)-th step's. */
  points: z.coerce.number().int().min(10).max(2000).default(1000),
});
export type CurveQuery = z.infer<typeof CurveQuery>;

export const JobCurve = z.object({
  /**
   * By step: the first point, every `stride`-th step's, the last, and every point with validation
   * scores. All of them when the job has no more steps than `points`.
   */
  points: z.array(MetricPointView),
  stride: z.number().int(),
  /**
   * The job's newest event when the points were read (null: none yet). Following
   * GET /v1/jobs/:id/events with `Last-Event-ID` set to it sends every later change and nothing
   * the points already hold; a finished job's stream then ends at once.
   */
  lastEventId: z.number().int().nullable(),
});
export type JobCurve = z.infer<typeof JobCurve>;

/** The `data` of each kind of event on GET /v1/jobs/:id/events (the SSE `event:` field names the kind). */
export const JobEventStatusData = z.object({
  status: JobStatusSchema,
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export const JobEventProgressData = z.object({
  step: z.number().int(),
  epoch: z.number().int(),
  totalSteps: z.number().int().nullable().optional(),
  imagesPerSecond: z.number().nullable().optional(),
  backend: z.string().nullable().optional(),
  /** On a (re)start from a checkpoint: points after this step belonged to a run that died and are gone. */
  restartedAtStep: z.number().int().optional(),
  /** The job's phase (as JobView.progress.phase); absent or null: training steps (or nothing) under way. */
  phase: JobPhase.nullable().optional(),
  /** On a (re)start: what the worker made of the data set (as JobView.dataset). */
  dataset: JobDataset.optional(),
  /** With steps: when the last step should be done (as JobView.progress.trainingEndsAt). */
  trainingEndsAt: z.iso.datetime().optional(),
});
export type JobEventStatusData = z.infer<typeof JobEventStatusData>;
export type JobEventProgressData = z.infer<typeof JobEventProgressData>;

/** A `warning` event's data: something that did not stop the job (skipped images, a model at chance). */
export const JobEventWarningData = z.object({ code: z.string(), message: z.string() });
export type JobEventWarningData = z.infer<typeof JobEventWarningData>;

/** How many warnings GET /v1/jobs/:id/warnings returns at most (`total` counts them all). */
export const WARNINGS_SHOWN = 100;

/** GET /v1/jobs/:id/warnings: what the job's `warnings` count counts, in words. */
export const JobWarnings = z.object({
  /** The first WARNINGS_SHOWN (100), oldest first; each also went out as a `warning` event. */
  warnings: z.array(JobEventWarningData.extend({ at: z.string() })),
  /** The job's `warnings`: all of them. */
  total: z.number().int(),
});
export type JobWarnings = z.infer<typeof JobWarnings>;

/** GET /v1/jobs/:id/queue: why a queued job has not started yet. */
export const JobQueuePlace = z.object({
  status: JobStatusSchema,
  /** Jobs the queue hands out before this one (0: it is next); null unless it waits on the queue. */
  position: z.number().int().nullable(),
  /**
   * The deployment's live workers by state (none: the job waits for one to start), and `away`:
   * those not heard from for less than WORKER_RESTART_GRACE_S (restarting, or gone), which a job
   * only they can run waits for.
   */
  workers: z.object({ idle: z.number().int(), training: z.number().int(), waitingForDisk: z.number().int(), away: z.number().int() }),
  /**
   * Workers (live or away) that took the job and left it on the queue because their DATA_ROOT has
   * no such image folder: it waits for a worker that may have it (and fails DATASET_NOT_FOUND once
   * every live and away worker has said it lacks it).
   */
  withoutFolder: z.number().int(),
});
export type JobQueuePlace = z.infer<typeof JobQueuePlace>;

export const JobIdParams = z.strictObject({ id: z.string().min(1).max(64) });

export const ListJobsQuery = z.strictObject({
  status: JobStatusSchema.optional(),
  ...PageQuery.shape,
});
export type ListJobsQuery = z.infer<typeof ListJobsQuery>;

/**
 * DELETE /v1/jobs: finished jobs created before `before`, newest first, a page at a time (a page's
 * deletions can take seconds each for long histories, hence the small pages).
 */
export const DeleteJobsQuery = z.strictObject({
  before: z.iso.datetime({ offset: true }),
  /** One finished status (default: all three); jobs not finished are never deleted. */
  status: z.enum(['succeeded', 'failed', 'cancelled'] satisfies JobStatus[]).optional(),
  ...PageQuery.shape,
});
export type DeleteJobsQuery = z.infer<typeof DeleteJobsQuery>;

export const DeletedJobs = z.object({
  /** Jobs deleted with everything of them, as DELETE /v1/jobs/:id does. */
  deleted: z.array(z.string()),
  /** Jobs of the page kept, with the 409 code that refused each (MODEL_SERVING, JOB_IN_USE). */
  kept: z.array(z.object({ id: z.string(), code: z.string(), message: z.string() })),
  /** Pass as `cursor` for the next (older) page; null: none is left. */
  nextCursor: z.string().nullable(),
});
export type DeletedJobs = z.infer<typeof DeletedJobs>;

/** The largest id, step or revision a database column holds (PostgreSQL `integer`): larger ones are 400s, not query errors. */
export const DB_INT_MAX = 2_147_483_647;

export const MetricsQuery = z.strictObject({
  /** Only points with a step greater than this (default 0). Not with `cursor`. */
  after: z.coerce.number().int().min(0).max(DB_INT_MAX).optional(),
  /**
   * Only points written since this revision: 0 at first, then the `nextCursor` of the last page.
   * Every point and every later score on it is returned exactly once. Not with `after`.
   */
  cursor: z.coerce.number().int().min(0).max(DB_INT_MAX).optional(),
  /** Points per page; with `cursor`, whole writes only (fewer, or one write's points when they alone are more). */
  limit: z.coerce.number().int().min(1).max(1000).default(500),
});
export type MetricsQuery = z.infer<typeof MetricsQuery>;

// Row shapes as Prisma returns them (both providers).
interface JobRow {
  id: string;
  name: string;
  status: string;
  config: string;
  epoch: number;
  step: number;
  totalSteps: number | null;
  imagesPerSecond: number | null;
  phase: string | null;
  dataset: string | null;
  trainingEndsAt: Date | null;
  backend: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  attempts: number;
  warnings: number;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function toModelView(m: ModelRow): ModelView {
  return toModelSummary(rowToRecord(m));
}

export function toJobView(row: JobRow & { model?: ModelRow | null }): JobView {
  return {
    id: row.id,
    name: row.name,
    status: row.status as JobView['status'],
    config: JSON.parse(row.config),
    progress: {
      epoch: row.epoch,
      step: row.step,
      totalSteps: row.totalSteps,
      imagesPerSecond: row.imagesPerSecond,
      // A job that ended (or went back to the queue) mid-phase keeps the column: a claim clears it.
      phase: row.status === 'running' || row.status === 'cancelling' ? parseJsonAs(JobPhase, row.phase) : null,
      // Written null by a claim, a (re)start and the last step; kept when the job leaves running.
      trainingEndsAt: row.status === 'running' ? iso(row.trainingEndsAt) : null,
    },
    dataset: parseJsonAs(JobDataset, row.dataset),
    backend: row.backend,
    attempts: row.attempts,
    warnings: row.warnings,
    error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
    createdAt: row.createdAt.toISOString(),
    startedAt: iso(row.startedAt),
    finishedAt: iso(row.finishedAt),
    updatedAt: row.updatedAt.toISOString(),
    model: row.model ? toModelView(row.model) : null,
  };
}

export function toMetricPointView(p: {
  step: number;
  epoch: number;
  loss: number | null;
  learningRate: number | null;
  imagesPerSecond: number | null;
  top1: number | null;
  top5: number | null;
  floatTop1: number | null;
  revision: number;
}): MetricPointView {
  return {
    step: p.step,
    epoch: p.epoch,
    loss: p.loss,
    learningRate: p.learningRate,
    imagesPerSecond: p.imagesPerSecond,
    top1: p.top1,
    top5: p.top5,
    floatTop1: p.floatTop1,
    revision: p.revision,
  };
}
