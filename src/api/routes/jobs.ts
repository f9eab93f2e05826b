// /v1/jobs: thin handlers over JobService (`train` scope). Request parts are parsed with the zod
// schemas in src/jobs/job-view.ts; responses are built by the service in the JobView shape.
// The creating key is recorded on the job: it counts against that key's cap of active jobs, and
// only an admin key's (or an auth-off) job may start serving its model without a promotion. A
// non-admin key cancels, resumes and deletes only the jobs it created.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isAdmin, principalKeyId } from '../../auth/auth-policy.js';
import type { JobService } from '../../jobs/job-service.js';
import { CurveQuery, DeleteJobsQuery, JobIdParams, ListJobsQuery, MetricsQuery, type DeletedJobs, type JobQueuePlace } from '../../jobs/job-view.js';
import { queueUnavailable } from '../../queue/redis-role.js';
import { countByState, type WorkerState } from '../../queue/worker-registry.js';
import { AuthError } from '../plugins/auth.js';
import { parseRequest } from '../validate.js';

export interface JobRoutesOptions {
  jobs: JobService;
  maxActiveJobsPerKey: number;
  maxStoredJobsPerKey: number;
  onModelDeleted?: (modelId: string) => void;
  /** The deployment's live workers, and those away for less than WORKER_RESTART_GRACE_S (src/queue/worker-registry.ts listFleet). */
  fleet: () => Promise<{ live: Array<{ id: string; state: WorkerState }>; away: Array<{ id: string }> }>;
  /** The workers that said they lack a job's image folder (src/queue/dataset-holders.ts). */
  lackingFolder: (jobId: string) => Promise<ReadonlySet<string>>;
}

export async function jobRoutes(app: FastifyInstance, opts: JobRoutesOptions) {
  const { jobs } = opts;
  const train = { config: { access: 'train' as const } };

  /** A non-admin key may change only the jobs it created. */
  const assertCreator = async (req: FastifyRequest, id: string, verb: string) => {
    if (isAdmin(req.principal)) return;
    const owner = await jobs.createdBy(id);
    if (owner !== principalKeyId(req.principal))
      throw new AuthError(403, 'JOB_NOT_OWNED', `job "${id}" was not created by this key; only its creator or an admin key may ${verb} it`);
  };

  app.post('/v1/jobs', train, async (req, reply) => {
    const owner = {
      keyId: principalKeyId(req.principal),
      autoServe: isAdmin(req.principal),
      maxActiveJobs: opts.maxActiveJobsPerKey,
      maxStoredJobs: opts.maxStoredJobsPerKey,
    };
    const header = req.headers['idempotency-key'];
    const idempotencyKey = Array.isArray(header) ? header.join(',') : header;
    const job = await jobs.create(req.body, { owner, idempotencyKey });
    req.log.info({ jobId: job.id, keyId: owner.keyId, autoServe: owner.autoServe }, 'job queued');
    return reply.status(201).header('location', `/v1/jobs/${job.id}`).send(job);
  });

  app.get('/v1/jobs', train, async (req) => jobs.list(parseRequest(ListJobsQuery, req.query, 'query')));

  app.get('/v1/jobs/:id', train, async (req) => jobs.get(parseRequest(JobIdParams, req.params, 'params').id));

  app.get('/v1/jobs/:id/warnings', train, async (req) => jobs.warnings(parseRequest(JobIdParams, req.params, 'params').id));

  app.get('/v1/jobs/:id/queue', train, async (req): Promise<JobQueuePlace> => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    const place = await jobs.queuePosition(id);
    const [fleet, lacking] = await Promise.all([opts.fleet(), opts.lackingFolder(id)]).catch((err: unknown) => {
      throw queueUnavailable(err);
    });
    const count = countByState(fleet.live);
    return {
      ...place,
      workers: { idle: count.idle, training: count.training, waitingForDisk: count['waiting-for-disk'], away: fleet.away.length },
      withoutFolder: [...fleet.live, ...fleet.away].filter((w) => lacking.has(w.id)).length,
    };
  });

  app.get('/v1/jobs/:id/metrics', train, async (req) => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    return jobs.metrics(id, parseRequest(MetricsQuery, req.query, 'query'));
  });

  app.get('/v1/jobs/:id/curve', train, async (req) => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    return jobs.curve(id, parseRequest(CurveQuery, req.query, 'query'));
  });

  app.post('/v1/jobs/:id/cancel', train, async (req) => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    await assertCreator(req, id, 'cancel');
    const job = await jobs.cancel(id);
    req.log.info({ jobId: id, status: job.status }, 'job cancel requested');
    return job;
  });

  app.post('/v1/jobs/:id/resume', train, async (req) => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    await assertCreator(req, id, 'resume');
    const job = await jobs.resume(id, opts.maxActiveJobsPerKey);
    req.log.info({ jobId: id, status: job.status }, 'job resumed');
    return job;
  });

  // Finished jobs in bulk (a key at MAX_STORED_JOBS_PER_KEY frees places): a train key's own, an admin's any.
  app.delete('/v1/jobs', train, async (req): Promise<DeletedJobs> => {
    const q = parseRequest(DeleteJobsQuery, req.query, 'query');
    const { models, leftPrefixes, ...page } = await jobs.deleteFinishedBefore(q, isAdmin(req.principal) ? null : principalKeyId(req.principal));
    for (const modelId of models) opts.onModelDeleted?.(modelId);
    req.log.info({ deleted: page.deleted.length, kept: page.kept.length, models: models.length }, 'finished jobs deleted');
    if (leftPrefixes.length) req.log.warn({ leftPrefixes }, 'jobs deleted, but some of their files could not be deleted from the artifact store');
    return page;
  });

  app.delete('/v1/jobs/:id', train, async (req, reply) => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    await assertCreator(req, id, 'delete');
    const { modelId, objectsDeleted, leftPrefixes } = await jobs.delete(id);
    if (modelId) opts.onModelDeleted?.(modelId);
    req.log.info({ jobId: id, modelId, objectsDeleted }, 'job deleted');
    if (leftPrefixes.length) req.log.warn({ jobId: id, leftPrefixes }, 'job deleted, but some of its files could not be deleted from the artifact store');
    return reply.status(204).send();
  });
}
