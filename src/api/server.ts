// `qatserve api`: listen, and on SIGTERM/SIGINT stop accepting, finish in-flight requests, close.
import type { Settings } from '../config/settings.js';
import { startReconciler } from '../queue/reconciler.js';
import { buildApp, type AppDeps } from './app.js';
import { openApiDeps } from './api-deps.js';

export async function runApi(
  settings: Settings,
  opts: { handleSignals?: boolean; workerStatus?: AppDeps['workerStatus'] } = {},
): Promise<{ close(): Promise<void>; port: number }> {
  const deps = { ...openApiDeps(settings), workerStatus: opts.workerStatus };
  const app = await buildApp(deps);
  // Repairs jobs whose queue entry went missing, at start and then periodically (one leader).
  const reconciler = startReconciler({ settings, prisma: deps.db.prisma, queue: deps.queue, artifacts: deps.artifacts, log: app.log });
  app.addHook('onClose', async () => {
    await reconciler.stop();
    await deps.close();
  });
  await app.listen({ port: settings.port, host: settings.host });
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
