// Maps every failure to the one error shape. Service errors carry their own status and code;
// Fastify's own errors (bad JSON, too large, wrong media type, timeouts) get codes of ours. Every
// 4xx/5xx body goes through `redactBody` on its way out (no paths, connection strings or stacks), and
// an error that knows when to come back (429, 503 overload) sends Retry-After.
import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { QueueUnavailableError, ServiceError } from '../../jobs/job-errors.js';
import { NoModelError } from '../../serving/errors.js';
import { isDatabaseLocked, isDatabaseReadOnly, isDatabaseUnavailable, isSqliteDiskFailure, isStorageFull, sqliteFailureLine } from '../../db/db-errors.js';
import { errorBody } from '../error-body.js';
import { redactBody } from '../../redact.js';

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
};

/** Codes for a plugin's error that names none (e.g. @fastify/static refusing a path that leaves its root). */
const STATUS_CODES: Record<number, string> = { 403: 'FORBIDDEN', 404: 'NOT_FOUND', 408: 'REQUEST_TIMEOUT', 413: 'BODY_TOO_LARGE' };

/**
 * 5xx answers that are the service working as designed: nothing to serve yet, or load shed (any
 * error that tells the client when to come back: PREDICT_OVERLOADED, STREAMS_FULL). They are
 * warnings, so error-level lines stay those an operator must act on (a queue or model that cannot
 * be reached, a bug).
 */
const asDesigned = (err: ServiceError) => err instanceof NoModelError || retryAfter(err) !== null;

/** Seconds to wait before retrying, when the error says (429 quotas, 503 overload). */
function retryAfter(err: unknown): number | null {
  const s = (err as { retryAfterSeconds?: unknown }).retryAfterSeconds;
  return typeof s === 'number' && s > 0 ? Math.ceil(s) : null;
}

/**
 * Seconds a client is asked to wait before retrying a request the database or Redis could not
 * answer (a restart or failover is over within seconds). Unlike the designed-for 503s these stay
 * error lines in the log: an operator has a dependency to look at.
 */
const DEPENDENCY_RETRY_AFTER_S = 5;

export const errorsPlugin = fp(async function errors(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError | ServiceError | Error, req, reply) => {
    const wait = retryAfter(err);
    if (wait !== null) reply.header('retry-after', String(wait));
    if (err instanceof ServiceError) {
      if (err instanceof QueueUnavailableError) reply.header('retry-after', String(DEPENDENCY_RETRY_AFTER_S));
      // No stack: a service error is thrown on purpose where its cause was caught, and its message
      // names that cause. While Redis was out, each refused POST logged ~20 lines of stack.
      if (err.statusCode >= 500 && asDesigned(err)) req.log.warn({ code: err.code }, err.message);
      else if (err.statusCode >= 500) req.log.error({ code: err.code }, err.message);
      return reply.status(err.statusCode).send(errorBody(err.code, err.message, err.issues));
    }
    const fe = err as FastifyError;
    const status = fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 600 ? fe.statusCode : 500;
    // Nothing was stored; an operator must free space, and the client may retry after.
    if (isStorageFull(err)) {
      req.log.error({ err }, "the database's disk is full: writes fail until space is freed");
      return reply.status(507).send(errorBody('STORAGE_FULL', "the server's disk is full: nothing was stored; retry once space has been freed on it"));
    }
    // A failover in progress, or DATABASE_URL leading to a standby: was a 500 "internal server error".
    if (isDatabaseReadOnly(err)) {
      req.log.error(
        { code: 'DATABASE_UNAVAILABLE' },
        'the database is read-only (SQLSTATE 25006): writes fail until DATABASE_URL leads to a writable primary (a standby, a reader endpoint, or default_transaction_read_only)',
      );
      reply.header('retry-after', String(DEPENDENCY_RETRY_AFTER_S));
      return reply
        .status(503)
        .send(
          errorBody(
            'DATABASE_UNAVAILABLE',
            `the database takes no writes right now (it is read-only): this change was not made; retry in ${DEPENDENCY_RETRY_AFTER_S} s`,
          ),
        );
    }
    // The SQLite file's disk turned read-only or fails: was a 500 "internal server error" with a
    // stack per request. No Retry-After: it takes an operator, not seconds.
    if (isSqliteDiskFailure(err)) {
      req.log.error(
        { code: 'STORAGE_FAILED' },
        `the SQLite database's disk refused a write (${sqliteFailureLine(err)}): it turned read-only (the kernel log, dmesg, says why) or it fails; writes fail until it is repaired`,
      );
      return reply
        .status(503)
        .send(
          errorBody('STORAGE_FAILED', "the server's disk refused the write (it turned read-only, or it fails): nothing was stored; retry once it is repaired"),
        );
    }
    if (isDatabaseUnavailable(err)) {
      const locked = isDatabaseLocked(err);
      req.log.error(
        { err },
        locked ? 'the SQLite database stayed locked by another process past its busy timeout (a transaction left open?)' : 'the database cannot be reached',
      );
      reply.header('retry-after', String(DEPENDENCY_RETRY_AFTER_S));
      const what = locked ? 'the database is locked by another process' : 'the database cannot be reached';
      return reply.status(503).send(errorBody('DATABASE_UNAVAILABLE', `${what}; retry in ${DEPENDENCY_RETRY_AFTER_S} s`));
    }
    if (status >= 500) {
      req.log.error({ err }, 'unhandled error');
      return reply.status(500).send(errorBody('INTERNAL', 'internal server error'));
    }
    const code = (fe.code && FASTIFY_CODES[fe.code]) ?? (err instanceof SyntaxError ? 'INVALID_JSON' : (STATUS_CODES[status] ?? 'BAD_REQUEST'));
    return reply.status(status).send(errorBody(code, err.message));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send(errorBody('ROUTE_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0].slice(0, 200)}`));
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    if (reply.statusCode >= 400 && typeof payload === 'string') return redactBody(payload);
    return payload;
  });
});
