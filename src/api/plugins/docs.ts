// GET /docs: Swagger UI over the committed openapi.yaml (static mode: the file is the contract).
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { readOpenApiDocument } from '../openapi.js';

export const docsPlugin = fp(async function docs(app: FastifyInstance) {
  await app.register(swagger, { mode: 'static', specification: { document: readOpenApiDocument() as never } });
  await app.register(swaggerUi, { routePrefix: '/docs' });
});
