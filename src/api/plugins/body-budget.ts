// Request bodies in memory. Node reads a body as fast as its client sends it, and the API holds it
// until the answer is sent (an image is decoded from its buffer). Measured against `qatserve
// serve` (forty-third session, a throwaway script): 100 uploads of 10 MB from one address, each
// with its last byte held back, took the API from 275 to 1,281 MiB of RSS; 256 of them (as many
// sockets as MAX_CONNECTIONS_PER_CLIENT lets one address open) to 2,935 MiB, and every further
// address or key adds as much: a container's memory limit is reached by one client with a predict
// key. So a body is admitted before its first byte is read, by its declared Content-Length (a
// chunked one at its route's limit), against MAX_BODY_BYTES_IN_FLIGHT for the process and
// MAX_BODY_BYTES_PER_CLIENT for one key (one address when anonymous), and counts until its answer
// has been sent or its connection closed. A refused body is never read into memory: Node discards it.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ServiceError } from '../../jobs/job-errors.js';
import { CappedCounts } from '../capped-counts.js';
import { rateLimitKey } from './rate-limit.js';

/** Bodies in flight are answered within a request timeout at most; most within a second. */
const BODY_RETRY_AFTER_S = 1;

const mib = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MiB`;

export class UploadsFullError extends ServiceError {
  readonly retryAfterSeconds = BODY_RETRY_AFTER_S;
  constructor(max: number) {
    super(503, 'UPLOADS_FULL', `this server already holds ${mib(max)} of request bodies (MAX_BODY_BYTES_IN_FLIGHT); retry shortly`);
    this.name = 'UploadsFullError';
  }
}

export class TooManyUploadsError extends ServiceError {
  readonly retryAfterSeconds = BODY_RETRY_AFTER_S;
  constructor(held: number, perClient: number) {
    super(
      429,
      'TOO_MANY_UPLOADS',
      `this client's requests in progress already hold ${mib(held)} of bodies, and this one would take it past ${mib(perClient)} (MAX_BODY_BYTES_PER_CLIENT); wait for their answers, or send fewer at once`,
    );
    this.name = 'TooManyUploadsError';
  }
}

/**
 * The bytes a request's body will hold: its Content-Length, or its route's limit when it is sent
 * chunked; 0 when it has none, or when its length is over the limit (Fastify answers 413 unread).
 */
export function bodyBytes(headers: FastifyRequest['headers'], routeLimit: number): number {
  const declared = headers['content-length'];
  if (declared !== undefined) {
    const n = Number(declared);
    return Number.isSafeInteger(n) && n > 0 && n <= routeLimit ? n : 0;
  }
  return headers['transfer-encoding'] !== undefined ? routeLimit : 0;
}

export interface BodyBudgetOptions {
  maxInFlight: number;
  perClient: number;
  /** The server listens on loopback only: a caller with auth off is not capped per client. */
  loopback: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Bytes of request bodies held now, and refusals by the cap they met (for /metrics). */
    bodyBudget: CappedCounts;
  }
}

export const bodyBudgetPlugin = fp(
  async function bodyBudget(app: FastifyInstance, opts: BodyBudgetOptions) {
    const counts = new CappedCounts(opts.perClient, opts.maxInFlight);
    app.decorate('bodyBudget', counts);
    if (opts.maxInFlight <= 0 && opts.perClient <= 0) return;
    // preParsing: after auth and the rate limits (onRequest), before the first byte is read.
    app.addHook('preParsing', async (req, reply, payload) => {
      const bytes = bodyBytes(req.headers, req.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit ?? 0);
      if (bytes === 0) return payload;
      const client = opts.loopback && req.principal?.authOff === true ? undefined : rateLimitKey(req);
      const taken = counts.take(client, bytes);
      if (taken === 'total') throw new UploadsFullError(counts.max);
      if (taken === 'client') throw new TooManyUploadsError(counts.heldBy(client!), counts.perClient);
      // 'close' comes once the answer is sent, or when the connection ends before that.
      reply.raw.once('close', taken);
      return payload;
    });
  },
  { name: 'qatserve-body-budget', fastify: '5.x', dependencies: ['qatserve-auth'] },
);
