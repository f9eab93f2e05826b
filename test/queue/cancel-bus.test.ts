// Cancel messages over real Redis pub/sub, scoped by queue prefix.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { cancelPublisher, subscribeCancels } from '../../src/queue/cancel-bus.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('cancel bus', () => {
  const pub = new Redis(url);
  afterAll(() => pub.disconnect());

  it('delivers job ids to subscribers of the same prefix only', async () => {
    const prefix = `qs-cancel-${process.pid}`;
    const got: string[] = [];
    const other: string[] = [];
    const a = await subscribeCancels(url, prefix, (id) => got.push(id));
    const b = await subscribeCancels(url, `${prefix}-other`, (id) => other.push(id));
    await cancelPublisher(pub, prefix).publish('job-1');
    await cancelPublisher(pub, prefix).publish('job-2');
    const until = Date.now() + 2000;
    while (got.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await a.close();
    await b.close();
    expect(got).toEqual(['job-1', 'job-2']);
    expect(other).toEqual([]);
  });
});
