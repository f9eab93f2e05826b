// Opens what the API needs (database, queue producer, a Redis connection for cancel messages)
// and closes it again. Shared by `qatserve api`, `qatserve serve` and the tests.
import type { Redis } from 'ioredis';
import { openRedis } from '../queue/redis-connection.js';
import type { Settings } from '../config/settings.js';
import { openArtifactStore } from '../artifacts/open-store.js';
import { openDatabase } from '../db/database.js';
import { requireDeployment } from '../db/deployment.js';
import { cancelPublisher } from '../queue/cancel-bus.js';
import { jobEventPublisher } from '../queue/job-event-bus.js';
import { openTrainingQueue, queueProducer } from '../queue/training-queue.js';
import type { AppDeps } from './app.js';

export interface OpenedDeps extends AppDeps {
  redis: Redis;
  /** `redis` and the queue's connections made so far (Bull makes each when first needed). */
  redisConnections(): Redis[];
  close(): Promise<void>;
}

export function openApiDeps(settings: Settings, logger?: AppDeps['logger']): OpenedDeps {
  const { deploymentId } = requireDeployment(settings);
  const db = openDatabase(settings.databaseUrl, settings.databaseTimeouts);
  const artifacts = openArtifactStore(settings);
  const queue = openTrainingQueue(settings);
  // Keep retrying in the background, but fail single commands fast so /readyz and POST answer.
  const redis = openRedis(settings.redisUrl, settings.redisTimeoutMs, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  redis.on('error', () => {}); // reported through /readyz, not as unhandled events
  queue.on('error', () => {});
  return {
    settings,
    db,
    artifacts,
    queue: queueProducer(queue, deploymentId),
    cancel: cancelPublisher(redis, settings.queuePrefix),
    wake: jobEventPublisher(redis, settings.queuePrefix),
    redis,
    redisConnections: () => [redis, ...queue.clients],
    async redisPing() {
      if (redis.status !== 'ready') throw new Error(`connection is ${redis.status}`);
      await redis.ping();
    },
    logger,
    async close() {
      await queue.close().catch(() => {});
      redis.disconnect();
      await artifacts.close();
      await db.close();
    },
  };
}
