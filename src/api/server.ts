// `qatserve api`: listen, and on SIGTERM/SIGINT stop accepting, finish in-flight requests, close.
import { SettingsError, type Settings } from '../config/settings.js';
import { artifactStoreWarning } from '../artifacts/open-store.js';
import { startReconciler } from '../queue/reconciler.js';
import { reportJointOutages, redisOutageLine, redisServer } from '../queue/redis-connection.js';
import { warnIfEvicting } from '../queue/redis-memory.js';
import { watchQueueHolder } from '../queue/redis-role.js';
import { probeWritable } from '../queue/disk-room.js';
import { buildApp, type AppDeps } from './app.js';
import { openApiDeps } from './api-deps.js';

export async function runApi(
  settings: Settings,
  opts: { handleSignals?: boolean; workerStatus?: AppDeps['workerStatus'] } = {},
): Promise<{ close(): Promise<void>; port: number }> {
  const deps = { ...openApiDeps(settings), workerStatus: opts.workerStatus };
  if (deps.artifacts.kind !== 'fs') {
    // Models from a remote store are served from local copies. With the cache unwritable (a
    // read-only or foreign-owned DATA_DIR) the API started "ready" and then never served,
    // saying each model file was "missing, unreadable or does not match its sha256 (ENOENT)".
    await probeWritable(settings.modelCacheDir).catch(async (err: Error) => {
      await deps.close();
      throw new SettingsError(
        `the model cache ${settings.modelCacheDir} cannot be written (${err.message}): the API copies each model there from the ${deps.artifacts.kind} store to serve it; set DATA_DIR to a directory this user can write`,
      );
    });
  }
  const app = await buildApp(deps);
  // Without Redis the API answers reads but queues and cancels nothing (503, and /readyz says
  // why); its log said nothing of it.
  const outages = reportJointOutages(
    () => deps.redisConnections(),
    (err) => app.log.warn(`${redisOutageLine(deps.redis, err)}: new jobs and cancels answer 503 until it answers (check REDIS_URL and that Redis runs)`),
    () => app.log.info(`Redis at ${redisServer(deps.redis)} answers`),
  );
  warnIfEvicting(deps.redis, (line) => app.log.warn(line));
  watchQueueHolder(
    deps.redis,
    (line) => app.log.error(`${line}. Until then new jobs answer 503 and /readyz fails`),
    (line) => app.log.info(line),
  );
  // Repairs jobs whose queue entry went missing, at start and then periodically (one leader).
  const reconciler = startReconciler({ settings, prisma: deps.db.prisma, queue: deps.queue, artifacts: deps.artifacts, log: app.log });
  app.addHook('onClose', async () => {
    outages.stop();
    await reconciler.stop();
    await deps.close();
  });
  await app.listen({ port: settings.port, host: settings.host }).catch(async (err: unknown) => {
    await app.close(); // the reconciler and connections, so the process can exit with the message
    throw listenError(err, settings);
  });
  const storeWarning = artifactStoreWarning(settings);
  if (storeWarning) app.log.warn(storeWarning);
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : settings.port;
  let closing: Promise<void> | null = null;
  const close = () => {
    // app.close() stops accepting, waits for in-flight requests, then runs onClose hooks.
    closing ??= (async () => {
      const timer = setTimeout(() => {
        app.log.error('in-flight requests did not finish in time; exiting');
        process.exit(1);
      }, settings.shutdownTimeoutMs);
      timer.unref();
      await app.close();
      clearTimeout(timer);
    })();
    return closing;
  };
  for (const sig of opts.handleSignals === false ? [] : (['SIGTERM', 'SIGINT'] as const)) {
    process.once(sig, () => {
      app.log.info({ signal: sig }, 'shutting down the API');
      void close().then(() => process.exit(0));
    });
  }
  return { close, port };
}

/** The socket errors a setting causes, as a message saying which setting to change; others as they are. */
export function listenError(err: unknown, settings: Pick<Settings, 'host' | 'port'>): unknown {
  const where = `${settings.host}:${settings.port}`;
  switch ((err as NodeJS.ErrnoException).code) {
    case 'EADDRINUSE':
      return new SettingsError(`cannot listen on ${where}: the port is in use (another qatserve?); stop that process or set PORT to a free port`);
    case 'EACCES':
      return new SettingsError(`cannot listen on ${where}: no permission (ports below 1024 need privileges); set PORT to 1024 or above`);
    case 'EADDRNOTAVAIL':
      return new SettingsError(`cannot listen on ${where}: HOST is not an address of this machine; set HOST to one of its addresses, or 0.0.0.0 for all`);
    // HOST as a name the resolver does not know (or cannot be asked about now).
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new SettingsError(
        `cannot listen on ${where}: HOST does not resolve to an address (${(err as Error).message}); set HOST to an address of this machine, or 0.0.0.0 for all`,
      );
    default:
      return err;
  }
}
