// What the API logs when a request fails: an operator reads error-level lines as faults to act on,
// so the service's designed-for answers (no model yet, load shed) must not appear there.
import { Writable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { errorsPlugin } from '../../src/api/plugins/errors.js';
import { QueueUnavailableError } from '../../src/jobs/job-errors.js';
import { ModelUnavailableError, NoModelError, OverloadedError } from '../../src/serving/errors.js';
import { StreamsFullError } from '../../src/api/routes/job-events.js';

interface LogLine {
  level: number;
  msg: string;
  code?: string;
  err?: unknown;
}

let app: FastifyInstance | null = null;
afterEach(async () => {
  await app?.close();
  app = null;
});

/** An app whose one route throws `err`; returns the status, the error code and the log lines of one request. */
async function failWith(err: Error): Promise<{ status: number; code: string; lines: LogLine[] }> {
  await app?.close();
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
  app = Fastify({ logger: { level: 'info', stream } });
  await app.register(errorsPlugin);
  app.get('/fail', async () => {
    throw err;
  });
  const res = await app.inject({ method: 'GET', url: '/fail' });
  return { status: res.statusCode, code: res.json<{ error: { code: string } }>().error.code, lines };
}

const WARN = 40;
const ERROR = 50;

describe('error logging', () => {
  it('logs 503 NO_MODEL, PREDICT_OVERLOADED and STREAMS_FULL as warnings, without a stack', async () => {
    for (const err of [new NoModelError(), new OverloadedError('the server is answering 4 predictions already; retry shortly'), new StreamsFullError(200)]) {
      const { status, lines } = await failWith(err);
      expect(status).toBe(503);
      const line = lines.find((l) => l.msg === err.message);
      expect(line).toMatchObject({ level: WARN, code: err.code });
      expect(line?.err).toBeUndefined();
      expect(lines.filter((l) => l.level >= ERROR)).toEqual([]);
    }
  });

  it("names a plugin's error by its status when it carries no code (a static file outside its root: 403 FORBIDDEN)", async () => {
    for (const [status, code] of [
      [403, 'FORBIDDEN'],
      [404, 'NOT_FOUND'],
      [413, 'BODY_TOO_LARGE'],
      [418, 'BAD_REQUEST'],
    ] as const) {
      const res = await failWith(Object.assign(new Error('Forbidden'), { statusCode: status }));
      expect([res.status, res.code]).toEqual([status, code]);
    }
  });

  it('logs a queue or model that cannot be reached, and an unhandled error, at error level', async () => {
    for (const err of [new QueueUnavailableError('connection refused'), new ModelUnavailableError('m1', 'file missing'), new Error('boom')]) {
      const { status, lines } = await failWith(err);
      expect(status === 503 || status === 500).toBe(true);
      expect(lines.filter((l) => l.level === ERROR)).toHaveLength(1);
    }
  });

  it('logs a dependency refusal as one line with its code and cause, without a stack (an unhandled error keeps its stack)', async () => {
    const refused = await failWith(new QueueUnavailableError('Redis connection is reconnecting'));
    const line = refused.lines.find((l) => l.level === ERROR);
    expect(line).toMatchObject({ code: 'QUEUE_UNAVAILABLE', msg: 'the job queue is unreachable: Redis connection is reconnecting' });
    expect(line?.err).toBeUndefined();
    const bug = await failWith(new Error('boom'));
    expect(bug.lines.find((l) => l.level === ERROR)?.err).toMatchObject({ message: 'boom', stack: expect.stringContaining('Error: boom') });
  });
});
