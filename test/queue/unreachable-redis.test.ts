// Redis that stops answering, then fails over to a live server. ioredis waits for an answer for
// ever by default, and the API asks Redis on every rate-limited request: before REDIS_TIMEOUT_MS,
// once Redis's host stopped answering every request but /healthz hung, also after its name had
// moved to a live server (measured by hand: curl gave up after 60 s, again and again, for as long
// as the kernel kept the dead connections, about 15 minutes). Now a connection that gets no answer
// within REDIS_TIMEOUT_MS is dropped and made anew.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_TIMEOUT_MIN_MS } from '../../src/config/settings.js';
import { apiEnv, bearer, call, createKey, startApi, type ApiProcess } from '../api/api-process.js';
import { tinySynthetic } from '../api/api-harness.js';
import { PartitionProxy } from '../integration/partition-proxy.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('qatserve api with its Redis cut off, then failed over', () => {
  let proxy: PartitionProxy;
  let api: ApiProcess;
  let key: string;
  beforeAll(async () => {
    proxy = await PartitionProxy.start(Number(new URL(REDIS_URL).port || 6379));
    const env = apiEnv('unreachable-redis', { REDIS_URL: proxy.through(REDIS_URL), REDIS_TIMEOUT_MS: String(REDIS_TIMEOUT_MIN_MS) });
    key = await createKey(env, 'ops', 'admin');
    api = await startApi(env);
  }, 60_000);
  afterAll(async () => {
    await api?.stop();
    await proxy?.close();
  });

  it('answers within REDIS_TIMEOUT_MS, and takes jobs onto the queue again once a server answers', async () => {
    const first = await call(api.base, 'POST', '/v1/jobs', bearer(key), tinySynthetic);
    expect(first.status).toBe(201);

    proxy.cut();
    const start = Date.now();
    const during = call(api.base, 'GET', '/v1/jobs', bearer(key));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    proxy.failover();
    // The rate limit's command waits out the timeout on its dead connection; the read needs no Redis.
    const list = await during;
    expect(list.status).toBe(200);
    expect(Date.now() - start).toBeLessThan(REDIS_TIMEOUT_MIN_MS + 3000);

    // Before: these hung too. Bull's own connection was as dead as the rate limit's.
    await expect.poll(async () => (await call(api.base, 'GET', '/readyz')).status, { timeout: 2 * REDIS_TIMEOUT_MIN_MS }).toBe(200);
    const second = await call(api.base, 'POST', '/v1/jobs', bearer(key), tinySynthetic);
    expect(second.status, second.text).toBe(201);
    // Both on the queue (no worker runs here): the first still ahead of the second.
    const place = await call(api.base, 'GET', `/v1/jobs/${second.json.id}/queue`, bearer(key));
    expect(place.json).toMatchObject({ status: 'queued', position: 1 });
  }, 60_000);
});
