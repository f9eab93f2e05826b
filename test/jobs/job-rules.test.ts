import { describe, expect, it } from 'vitest';
import { isTerminal, JOB_STATUSES } from '../../src/jobs/job-status.js';
import { decodeCursor, encodeCursor } from '../../src/jobs/page-cursor.js';
import { ValidationError, toIssues } from '../../src/jobs/job-errors.js';

describe('job state rules', () => {
  it('terminal states', () => {
    expect(JOB_STATUSES.filter(isTerminal)).toEqual(['succeeded', 'failed', 'cancelled']);
  });
});

describe('list cursor', () => {
  it('round-trips (createdAt, id) and rejects anything else with a 400', () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    expect(decodeCursor(encodeCursor(at, 'abc'))).toEqual({ createdAt: at, id: 'abc' });
    for (const bad of ['x', Buffer.from('[1,2]').toString('base64url'), Buffer.from('["nope","a"]').toString('base64url')]) {
      expect(() => decodeCursor(bad)).toThrow(ValidationError);
    }
  });
});

describe('issue paths', () => {
  it('joins zod paths with dots under an optional prefix', () => {
    expect(toIssues([{ path: ['training', 'batchSize'], message: 'm' }])).toEqual([{ path: 'training.batchSize', message: 'm' }]);
    expect(toIssues([{ path: [], message: 'm' }], 'body')).toEqual([{ path: 'body', message: 'm' }]);
    expect(toIssues([{ path: ['a', 0], message: 'm' }], 'query')).toEqual([{ path: 'query.a.0', message: 'm' }]);
  });
});
