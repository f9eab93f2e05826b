// /v1/keys: API key management over HTTP for admin keys (the same store as `qatserve keys`).
// A new key is in the 201 answer once; listings show names, public prefixes and scopes only.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { KeyError, type ApiKeyInfo, type KeyStore } from '../../auth/key-store.js';
import { SCOPES } from '../../auth/scopes.js';
import { ServiceError } from '../../jobs/job-errors.js';
import type { JobService } from '../../jobs/job-service.js';
import { errorRef, jsonRef, jsonSchema, secured } from '../openapi-helpers.js';
import { parseRequest } from '../validate.js';

export const ApiKeyView = z.object({
  id: z.string(),
  name: z.string(),
  /** The key's public first characters. */
  prefix: z.string(),
  scopes: z.array(z.enum(SCOPES)),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
export const ApiKeyList = z.object({ items: z.array(ApiKeyView) });
export const CreateKeyBody = z.strictObject({
  name: z.string().min(1).max(64),
  scopes: z.array(z.enum(SCOPES)).min(1),
});
export const CreatedKey = z.object({
  /** The key itself: shown this once, stored only as a hash. */
  key: z.string(),
  info: ApiKeyView,
});
export const KeyNameParams = z.object({ name: z.string().min(1).max(64) });
export const RevokeKeyBody = z.strictObject({
  /** Also cancel the key's unfinished jobs: queued ones at once, running ones at their next step. */
  cancelJobs: z.boolean().default(false),
});
export const RevokedKey = ApiKeyView.extend({
  /** Ids of the key's jobs this revocation cancelled (or asked to stop, when running). */
  jobsCancelled: z.array(z.string()),
  /** The key's jobs still queued or running: they go on unless cancelled. */
  jobsGoingOn: z.number().int(),
});

const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };

/** These routes' part of openapi.yaml (merged by src/api/openapi.ts). */
export const openapi = {
  paths: {
    '/v1/keys': {
      get: secured('admin', {
        operationId: 'listKeys',
        summary: 'API keys (names, public prefixes, scopes; never the keys)',
        responses: { '200': jsonRef('ApiKeyList', 'The keys, oldest first') },
      }),
      post: secured('admin', {
        operationId: 'createKey',
        summary: 'Create an API key; the answer holds the key, once',
        requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(CreateKeyBody, 'input') } } },
        responses: {
          '201': jsonRef('CreatedKey', 'Created'),
          '400': errorRef('Invalid name or scopes'),
          '409': errorRef('The name is taken (KEY_NAME_TAKEN)'),
        },
      }),
    },
    '/v1/keys/{name}/revoke': {
      post: secured('admin', {
        operationId: 'revokeKey',
        summary: 'Revoke a key (at once on this replica, within 2 s on the others)',
        description:
          'Idempotent. The key\'s queued and running jobs go on (`jobsGoingOn` counts them) unless the body says `{"cancelJobs": true}`: a leaked key\'s jobs would otherwise hold the workers for hours.',
        parameters: [nameParam],
        requestBody: { required: false, content: { 'application/json': { schema: jsonSchema(RevokeKeyBody, 'input') } } },
        responses: { '200': jsonRef('RevokedKey', 'Revoked'), '400': errorRef('Invalid body'), '404': errorRef('No key of that name') },
      }),
    },
  },
  schemas: { ApiKey: jsonSchema(ApiKeyView), ApiKeyList: jsonSchema(ApiKeyList), CreatedKey: jsonSchema(CreatedKey), RevokedKey: jsonSchema(RevokedKey) },
};

export function keyView(k: ApiKeyInfo): z.infer<typeof ApiKeyView> {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes,
    createdAt: k.createdAt.toISOString(),
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
  };
}

const KEY_ERROR_STATUS: Record<KeyError['code'], number> = { KEY_NAME_INVALID: 400, SCOPES_INVALID: 400, KEY_NAME_TAKEN: 409, KEY_NOT_FOUND: 404 };

async function mapKeyErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof KeyError) throw new ServiceError(KEY_ERROR_STATUS[err.code], err.code, err.message);
    throw err;
  }
}

export async function keyRoutes(app: FastifyInstance, opts: { keys: KeyStore; jobs: JobService }) {
  const admin = { config: { access: 'admin' as const } };

  app.get('/v1/keys', admin, async () => ({ items: (await opts.keys.list()).map(keyView) }));

  app.post('/v1/keys', admin, async (req, reply) => {
    const body = parseRequest(CreateKeyBody, req.body, 'body');
    const { key, info } = await mapKeyErrors(() => opts.keys.create(body.name, body.scopes));
    app.auth.forget();
    req.log.info({ keyName: info.name, scopes: info.scopes, by: req.principal.kind === 'key' ? req.principal.key.name : null }, 'API key created');
    return reply.status(201).send({ key, info: keyView(info) });
  });

  app.post('/v1/keys/:name/revoke', admin, async (req) => {
    const { name } = parseRequest(KeyNameParams, req.params, 'params');
    const body = parseRequest(RevokeKeyBody, req.body ?? {}, 'body');
    const info = await mapKeyErrors(() => opts.keys.revoke(name));
    app.auth.forget();
    const jobs = await opts.jobs.jobsOfRevokedKey(info.id, body.cancelJobs);
    req.log.info({ keyName: name, jobsCancelled: jobs.cancelled.length, jobsGoingOn: jobs.goingOn }, 'API key revoked');
    return { ...keyView(info), jobsCancelled: jobs.cancelled, jobsGoingOn: jobs.goingOn } satisfies z.infer<typeof RevokedKey>;
  });
}
