// What a worker logs while its progress writes fail (a database outage): a line when the failures
// start, one a minute while they last, one when a write succeeds again; not one a second.
import { describe, expect, it } from 'vitest';
import { FailureLog } from '../../src/queue/failure-log.js';
import type { Logger } from '../../src/logger.js';

describe('FailureLog', () => {
  it('logs the start of a run of failures, a line a minute while it lasts, and its end', () => {
    const lines: Array<[string, string, object]> = [];
    const at = (level: string) => (fields: object, msg: string) => void lines.push([level, msg, fields]);
    const log = { info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger;
    let now = 0;
    const f = new FailureLog(log, 'recording training progress', { jobId: 'j' }, 60_000, () => now);
    f.succeeded(); // nothing failed: nothing to say
    const down = new Error('database unreachable');
    for (now = 0; now < 100_000; now += 1000) f.failed(down); // 100 s down, a write a second
    now = 101_000;
    f.succeeded();
    f.succeeded();
    expect(lines.map(([level, msg]) => [level, msg])).toEqual([
      ['error', 'recording training progress failed; retrying'],
      ['error', 'recording training progress still failing: 61 attempts in 60 s'],
      ['info', 'recording training progress works again, after 100 failed attempts in 101 s'],
    ]);
    expect(lines[0][2]).toMatchObject({ jobId: 'j', err: down });
    // A second outage starts its own count.
    f.failed(down);
    expect(lines.at(-1)![1]).toBe('recording training progress failed; retrying');
  });
});
