// The serving layer as a Fastify plugin: decorates the app with `serving` (model registry +
// predictor pool), starts it on register and closes the worker threads in onClose.
//
//   await app.register(servingPlugin, { store: new PrismaModelStore(prisma), ...servingSettings });
//
// The route plugins (src/api/routes/predict.ts, models.ts) use `app.serving` when it is there.
// When an app registers only the routes, they share one ServingService per Prisma client
// (`sharedServing`), created on first use and closed when the last app using it closes.
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { ServingService, type ServingOptions } from './prediction-service.js';
import type { Prisma } from '../db/database.js';
import { PrismaModelStore, type ModelFiles, type ModelStore } from './model-store.js';
import type { RegistryLogger } from './model-registry.js';
import { servingSettingsFromEnv, type ServingSettings } from './serving-settings.js';

declare module 'fastify' {
  interface FastifyInstance {
    serving: ServingService;
  }
}

export type ServingPluginOptions = { service: ServingService } | (Omit<ServingOptions, 'log'> & { log?: RegistryLogger });

export function registryLogger(log: FastifyBaseLogger): RegistryLogger {
  return {
    info: (o, m) => log.info(o, m),
    warn: (o, m) => log.warn(o, m),
    error: (o, m) => log.error(o, m),
  };
}

export function servingOptionsFromSettings(store: ModelStore, s: ServingSettings): ServingOptions {
  return {
    store,
    size: s.workers,
    batchWindowMs: s.batchWindowMs,
    maxBatch: s.maxBatch,
    maxImageBytes: s.maxImageBytes,
    maxImagePixels: s.maxImagePixels,
    pollMs: s.pollMs,
    maxExtraModels: s.maxExtraModels,
  };
}

export const servingPlugin = fp(
  async function serving(app: FastifyInstance, opts: ServingPluginOptions) {
    const service = 'service' in opts ? opts.service : new ServingService({ log: registryLogger(app.log), ...opts });
    app.decorate('serving', service);
    app.addHook('onClose', async () => {
      await service.close();
    });
    await service.start();
  },
  { name: 'qatserve-serving', fastify: '5.x' },
);

const shared = new WeakMap<object, { service: ServingService; users: number; started: Promise<void> }>();

/**
 * The app's ServingService: `app.serving` if the plugin is registered, else one shared per Prisma
 * client, configured from the environment (PREDICT_* settings; `settings` overrides them, e.g.
 * `deps.settings.serving` once the app's Settings carry it) and closed with the last app.
 */
export async function servingFor(app: FastifyInstance, prisma: unknown, settings?: Partial<ServingSettings>, files?: ModelFiles): Promise<ServingService> {
  if (app.hasDecorator('serving') && app.serving) return app.serving;
  if (!prisma || typeof prisma !== 'object') throw new Error('serving routes need either the servingPlugin or a Prisma client');
  let s = shared.get(prisma);
  if (!s) {
    if (!files) throw new Error('serving routes need the model files of the artifact store');
    const store = new PrismaModelStore(prisma as Prisma, files);
    const service = new ServingService({ ...servingOptionsFromSettings(store, { ...servingSettingsFromEnv(), ...settings }), log: registryLogger(app.log) });
    s = { service, users: 0, started: service.start() };
    shared.set(prisma, s);
  }
  const entry = s;
  entry.users++;
  app.addHook('onClose', async () => {
    entry.users--;
    if (entry.users === 0) {
      shared.delete(prisma);
      await entry.service.close();
    }
  });
  await entry.started;
  return entry.service;
}
