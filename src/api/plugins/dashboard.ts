// The web dashboard (web/): static files under /ui/, and / redirects there. The page talks to the
// public REST API only, so it needs nothing from the server beyond these files. uPlot, its chart
// library, is served from the installed npm package at /ui/vendor/uplot/ (no copy in the repo).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';

// src/api/plugins (tsx) and dist/api/plugins (built) are both three levels below the package root.
const WEB_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../web');
// The package's main file is dist/uPlot.cjs.js: its folder holds the browser build and the CSS.
const UPLOT_DIST = path.dirname(createRequire(import.meta.url).resolve('uplot'));

/**
 * What the dashboard's pages may load: its own scripts only (a class name or error text that made
 * it into markup could not run), fetches to this API, blob: images of the photos a user picks,
 * and no framing by other sites. Inline styles stay allowed: uPlot and the confusion table set them.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export async function dashboardPlugin(app: FastifyInstance) {
  // This plugin's own routes only (not fastify-plugin wrapped): /docs has its own policy (docs.ts).
  app.addHook('onSend', async (_req, reply) => {
    reply.header('content-security-policy', DASHBOARD_CSP);
  });
  await app.register(fastifyStatic, { root: WEB_ROOT, prefix: '/ui/' });
  await app.register(fastifyStatic, {
    root: UPLOT_DIST,
    prefix: '/ui/vendor/uplot/',
    decorateReply: false,
    allowedPath: (p) => /^\/uPlot\.(iife\.min\.js|min\.css)$/.test(p),
  });
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/ui/'));
}
