// The serving layer as a Fastify plugin: decorates the app with `serving` (model registry +
// predictor pool), starts it on register and closes the worker threads in onClose. buildApp
// registers it for production and for tests alike; the route plugins (src/api/routes/predict.ts,
// models.ts) use `app.serving`.
//
//   await app.register(servingPlugin, { store: new PrismaModelStore(prisma, files), settings: settings.serving });
//   await app.register(servingPlugin, { service });   // a ServingService built by the caller
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { ServingSettings } from '../config/settings.js';
import { ServingService, type ServingOptions } from './prediction-service.js';
import type { ModelStore } from './model-store.js';
import type { Logger } from '../logger.js';

declare module 'fastify' {
  interface FastifyInstance {
    serving: ServingService;
  }
}

export type ServingPluginOptions = { service: ServingService } | { store: ModelStore; settings: ServingSettings };

export function registryLogger(log: FastifyBaseLogger): Logger {
  return {
    info: (o: object | string, m?: string) => log.info(o, m),
    warn: (o: object | string, m?: string) => log.warn(o, m),
    error: (o: object | string, m?: string) => log.error(o, m),
  };
}

export function servingOptionsFromSettings(store: ModelStore, s: ServingSettings): ServingOptions {
  return {
    store,
    size: s.workers,
    batchWindowMs: s.batchWindowMs,
    maxBatch: s.maxBatch,
    maxQueue: s.maxQueue,
    maxImagesPerRequest: s.maxImagesPerRequest,
    maxImageBytes: s.maxImageBytes,
    maxImagePixels: s.maxImagePixels,
    pollMs: s.pollMs,
    maxExtraModels: s.maxExtraModels,
    maxLoadsPerMinute: s.maxLoadsPerMinute,
  };
}

export const servingPlugin = fp(
  async function serving(app: FastifyInstance, opts: ServingPluginOptions) {
    const service =
      'service' in opts ? opts.service : new ServingService({ ...servingOptionsFromSettings(opts.store, opts.settings), log: registryLogger(app.log) });
    app.decorate('serving', service);
    app.addHook('onClose', async () => {
      await service.close();
    });
    await service.start();
  },
  { name: 'qatserve-serving', fastify: '5.x' },
);
