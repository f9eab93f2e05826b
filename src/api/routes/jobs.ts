// /v1/jobs: thin handlers over JobService. Request parts are parsed with the zod schemas in
// src/jobs/job-view.ts; responses are built by the service in the JobView shape.
import type { FastifyInstance } from 'fastify';
import type { JobService } from '../../jobs/job-service.js';
import { JobIdParams, ListJobsQuery, MetricsQuery } from '../../jobs/job-view.js';
import { parseRequest } from '../validate.js';

export async function jobRoutes(app: FastifyInstance, opts: { jobs: JobService }) {
  const { jobs } = opts;

  app.post('/v1/jobs', async (req, reply) => {
    const idempotencyKey = req.headers['idempotency-key'];
    const job = await jobs.create(req.body, { idempotencyKey: Array.isArray(idempotencyKey) ? idempotencyKey.join(',') : idempotencyKey });
    req.log.info({ jobId: job.id }, 'job queued');
    return reply.status(201).header('location', `/v1/jobs/${job.id}`).send(job);
  });

  app.get('/v1/jobs', async (req) => jobs.list(parseRequest(ListJobsQuery, req.query, 'query')));

  app.get('/v1/jobs/:id', async (req) => jobs.get(parseRequest(JobIdParams, req.params, 'params').id));

  app.get('/v1/jobs/:id/metrics', async (req) => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    return jobs.metrics(id, parseRequest(MetricsQuery, req.query, 'query'));
  });

  app.post('/v1/jobs/:id/cancel', async (req) => {
    const { id } = parseRequest(JobIdParams, req.params, 'params');
    const job = await jobs.cancel(id);
    req.log.info({ jobId: id, status: job.status }, 'job cancel requested');
    return job;
  });
}
