// GET /docs: Swagger UI over the committed openapi.yaml (static mode: the file is the contract).
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { readOpenApiDocument } from '../openapi.js';

export const docsPlugin = fp(async function docs(app: FastifyInstance) {
  await app.register(swagger, { mode: 'static', specification: { document: readOpenApiDocument() as never } });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    // Its pages run only their own scripts (the plugin's policy, with hashes of its inline ones).
    // Without the plugin's `upgrade-insecure-requests`, which would send a plain-HTTP server's
    // own assets to https:// (on any host but localhost), framed by no site, and with inline
    // styles (Swagger UI sets one the plugin's hashes miss; the dashboard allows them too).
    staticCSP: true,
    transformStaticCSP: (policy: string) =>
      policy
        .replace(/\s*upgrade-insecure-requests;?/, '')
        .replace("frame-ancestors 'self'", "frame-ancestors 'none'")
        .replace(' validator.swagger.io', '')
        .replace(/style-src [^;]*/, "style-src 'self' 'unsafe-inline'"),
  });
});
