// GET /v1/workers: the deployment's live workers and what each is doing, from their entries in
// Redis (src/queue/worker-registry.ts): why a queued job is not starting (no worker running, all
// busy, one waiting for disk space, one away) without logging in to the workers' machines.
import type { FastifyInstance } from 'fastify';
import { queueUnavailable } from '../../queue/redis-role.js';
import { WorkerList, WorkerView, type Fleet } from '../../queue/worker-registry.js';
import { errorRef, jsonRef, jsonSchema, secured } from '../openapi-helpers.js';

/** These routes' part of openapi.yaml (merged by src/api/openapi.ts). */
export const openapi = {
  paths: {
    '/v1/workers': {
      get: secured('admin', {
        operationId: 'listWorkers',
        summary: "The deployment's live workers: state (idle, training, waiting-for-disk), job, reason, disk; and those away",
        responses: {
          '200': jsonRef('WorkerList', 'Workers heard from in the last 20 s, and those away (heard from within WORKER_RESTART_GRACE_S), by id'),
          '503': errorRef('Redis is unreachable (QUEUE_UNAVAILABLE, with Retry-After)'),
        },
      }),
    },
  },
  schemas: { Worker: jsonSchema(WorkerView), WorkerList: jsonSchema(WorkerList) },
};

export async function workerRoutes(app: FastifyInstance, opts: { fleet: () => Promise<Fleet> }) {
  app.get('/v1/workers', { config: { access: 'admin' as const } }, async (): Promise<WorkerList> => {
    try {
      const { live, away } = await opts.fleet();
      return { workers: live, away };
    } catch (err) {
      throw queueUnavailable(err);
    }
  });
}
