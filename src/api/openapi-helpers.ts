// Building blocks of openapi.yaml shared by the route modules: JSON Schema from zod, response
// references, and each operation's security (the Bearer scheme with the scope the route needs, as
// OpenAPI 3.1 allows role names for non-OAuth schemes). test/api/auth.test.ts checks every
// documented scope against what the server enforces.
import { z } from 'zod';
import type { Scope } from '../auth/scopes.js';

export const BEARER_SCHEME = 'bearerAuth';

export function jsonSchema(s: z.ZodType, io: 'input' | 'output' = 'output'): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

export const jsonRef = (name: string, description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: `#/components/schemas/${name}` } } },
});
export const errorRef = (description: string) => jsonRef('Error', description);

/** A zod object of query fields as OpenAPI query parameters (all optional: each has a default or may be left out). */
export function queryParams(obj: z.ZodObject): object[] {
  return Object.entries(obj.shape).map(([name, field]) => ({
    name,
    in: 'query',
    required: false,
    schema: jsonSchema(field as z.ZodType, 'input'),
  }));
}

export const withRetryAfter = (description: string) => ({
  ...errorRef(description),
  headers: { 'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } } },
});

export const RATE_LIMITED = withRetryAfter('Over RATE_LIMIT_PER_MINUTE for this key or address (RATE_LIMITED)');

const SHED = 'load shed: the event loop lags more than MAX_EVENT_LOOP_DELAY_MS (OVERLOADED, with Retry-After)';

/** Every route but /healthz may be load shed (src/api/plugins/load-shedding.ts): its 503 says so. */
function withShedding(responses: Record<string, unknown>): Record<string, unknown> {
  const own = responses['503'] as { description: string; headers?: unknown } | undefined;
  const shed = withRetryAfter(`L${SHED.slice(1)}`);
  return { ...responses, '503': own ? { ...own, description: `${own.description}; or ${SHED}`, headers: own.headers ?? shed.headers } : shed };
}

const UPLOADS_429 =
  "this key's (anonymous: this address's) requests in progress hold MAX_BODY_BYTES_PER_CLIENT of bodies (TOO_MANY_UPLOADS, with Retry-After; nothing read)";
const UPLOADS_503 = 'the server holds MAX_BODY_BYTES_IN_FLIGHT of request bodies (UPLOADS_FULL, with Retry-After; nothing read)';

const CODED_415 = 'a Content-Encoding other than identity: bodies are read as sent (UNSUPPORTED_CONTENT_ENCODING, with Accept-Encoding; nothing read)';
const ACCEPT_ENCODING = { 'Accept-Encoding': { description: 'The codings a body may be sent in: identity', schema: { type: 'string' } } };

/**
 * An operation with a body is admitted by its coding (src/api/app.ts) and size
 * (src/api/plugins/body-budget.ts) before it is read: its 415, 429 and 503 say so.
 */
function withBodyAdmission(op: Operation, responses: Record<string, unknown>): Record<string, unknown> {
  if (op.requestBody === undefined) return responses;
  const add = (status: string, text: string, response: (description: string) => object) => {
    const own = responses[status] as { description: string } | undefined;
    return own ? { ...own, description: `${own.description}; or ${text}` } : response(`${text[0].toUpperCase()}${text.slice(1)}`);
  };
  return {
    ...responses,
    '415': { ...add('415', CODED_415, errorRef), headers: ACCEPT_ENCODING },
    '429': add('429', UPLOADS_429, withRetryAfter),
    '503': add('503', UPLOADS_503, withRetryAfter),
  };
}

interface Operation {
  summary: string;
  description?: string;
  responses: Record<string, unknown>;
  [k: string]: unknown;
}

/** An operation that needs an API key with `scope` (admin keys hold every scope). */
export function secured(scope: Scope, op: Operation): Operation {
  const needs = scope === 'admin' ? 'an API key with the `admin` scope' : `an API key with the \`${scope}\` (or \`admin\`) scope`;
  return {
    ...op,
    description: [op.description, `Needs ${needs}, unless auth is off (see the README).`].filter(Boolean).join('\n\n'),
    security: [{ [BEARER_SCHEME]: [scope] }],
    responses: withShedding(
      withBodyAdmission(op, {
        ...op.responses,
        '401': errorRef('No API key (AUTH_REQUIRED) or an unknown or revoked one (API_KEY_INVALID)'),
        '403': errorRef(`The key lacks the \`${scope}\` scope (SCOPE_MISSING)`),
        // An operation's own 429 names RATE_LIMITED too.
        '429': op.responses['429'] ?? RATE_LIMITED,
      }),
    ),
  };
}

/** An operation anyone may call. `guarded`: counted against the caller's address, and load shed (not /healthz). */
export function open(op: Operation, guarded = true): Operation {
  return { ...op, security: [], responses: guarded ? withShedding(withBodyAdmission(op, { ...op.responses, '429': RATE_LIMITED })) : op.responses };
}
