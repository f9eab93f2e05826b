// The web dashboard (web/): static files under /ui/, and / redirects there. The page talks to the
// public REST API only, so it needs nothing from the server beyond these files.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';

// src/api/plugins (tsx) and dist/api/plugins (built) are both three levels below the package root.
const WEB_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../web');

export async function dashboardPlugin(app: FastifyInstance) {
  await app.register(fastifyStatic, { root: WEB_ROOT, prefix: '/ui/' });
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/ui/'));
}
