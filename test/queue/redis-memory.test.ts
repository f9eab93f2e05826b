// A Redis that may drop keys when full (a managed service's default, a Redis shared with a cache)
// loses Bull's queue entries and locks without an error: the services say so when they connect.
// A full Redis that keeps its keys refuses writes: said once, and when it has room again.
// Real redis-servers, each set as an operator would set it.
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { evicts, isRedisFull, parseMemory, warnIfEvicting, watchRedisFull } from '../../src/queue/redis-memory.js';
import { freePort } from '../integration/serve-process.js';

const servers: ChildProcess[] = [];
const clients: Redis[] = [];
afterAll(() => {
  for (const c of clients) c.disconnect();
  for (const s of servers) s.kill('SIGKILL');
});

/** A redis-server with `args`, and a client that collects what warnIfEvicting says about it. */
async function redisWith(...args: string[]): Promise<{ redis: Redis; lines: string[]; port: number }> {
  const port = await freePort();
  servers.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args], { stdio: 'ignore' }));
  const redis = new Redis(port, '127.0.0.1', { retryStrategy: () => 50 });
  clients.push(redis);
  redis.on('error', () => {}); // refused until the server listens
  const lines: string[] = [];
  warnIfEvicting(redis, (l) => lines.push(l));
  await new Promise((r) => redis.once('ready', r));
  return { redis, lines, port };
}

/** Waits a little for a check in flight (one INFO round trip) to have said what it says. */
const settled = () => new Promise((r) => setTimeout(r, 300));

describe('a Redis that evicts keys', () => {
  it("reads INFO memory's limit, policy and the memory it counts against the limit", () => {
    const m = parseMemory(
      '# Memory\r\nused_memory:9000000\r\nused_memory_human:8.58M\r\nmaxmemory:67108864\r\nmaxmemory_human:64.00M\r\nmaxmemory_policy:allkeys-lru\r\nmem_not_counted_for_evict:1000000\r\n',
    );
    expect(m).toEqual({ policy: 'allkeys-lru', maxmemoryBytes: 67108864, usedBytes: 8000000 });
    expect(evicts(m!)).toBe(true);
    expect(evicts({ ...m!, policy: 'noeviction' })).toBe(false);
    // No limit: nothing is evicted whatever the policy.
    expect(evicts({ ...m!, maxmemoryBytes: 0 })).toBe(false);
    expect(parseMemory('# Memory\r\nused_memory:1\r\n')).toBeNull();
  });

  it('is named once, with its limit, its policy and what to set, and again when it connects to a server set otherwise', async () => {
    const { redis, lines, port } = await redisWith('--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru');
    await settled();
    expect(lines).toEqual([
      `Redis at 127.0.0.1:${port} drops keys when it holds maxmemory 64 MiB (maxmemory-policy allkeys-lru): the job queue's entries and running jobs' locks can vanish (a queued job then waits for the reconciler, a running one goes back to the queue to resume from its last checkpoint); set maxmemory-policy noeviction on it, as Bull requires`,
    ]);
    // A reconnect to the same setting says nothing new.
    redis.disconnect(true);
    await new Promise((r) => redis.once('ready', r));
    await settled();
    expect(lines).toHaveLength(1);
    // volatile-* drops keys with an expiry: Bull's locks have one.
    await redis.config('SET', 'maxmemory-policy', 'volatile-lru');
    redis.disconnect(true);
    await new Promise((r) => redis.once('ready', r));
    await settled();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain('(maxmemory-policy volatile-lru)');
  });

  it('says nothing of a Redis that never evicts: noeviction, or no memory limit', async () => {
    const safe = await redisWith('--maxmemory', '64mb', '--maxmemory-policy', 'noeviction');
    const unlimited = await redisWith('--maxmemory-policy', 'allkeys-lru');
    await settled();
    expect([...safe.lines, ...unlimited.lines]).toEqual([]);
  });

  it('a full Redis that keeps its keys: said once however many writes it refuses, and once when it has room again', async () => {
    const { redis, port } = await redisWith('--maxmemory', '4mb', '--maxmemory-policy', 'noeviction');
    const full: string[] = [];
    const room: string[] = [];
    const watch = watchRedisFull(
      redis,
      100,
      (l) => full.push(l),
      (l) => room.push(l),
    );
    const value = 'x'.repeat(100_000);
    let refusal: unknown = null;
    for (let i = 0; i < 100 && refusal === null; i++) await redis.set(`junk${i}`, value).catch((err: unknown) => (refusal = err));
    expect(isRedisFull(refusal)).toBe(true);
    // A MULTI (a worker's state entry) is discarded whole, naming the refusal among its errors.
    const discarded: unknown = await redis
      .multi()
      .set('tx-key', value)
      .exec()
      .catch((err: unknown) => err);
    expect(isRedisFull(discarded)).toBe(true);
    expect(isRedisFull(new Error('Connection is closed.'))).toBe(false);
    for (let i = 0; i < 3; i++) expect(watch.saw(refusal)).toBe(true);
    expect(watch.saw(new Error('Connection is closed.'))).toBe(false);
    await new Promise((r) => setTimeout(r, 500));
    expect(full).toEqual([
      `Redis at 127.0.0.1:${port} is full: its memory reached its maxmemory and it refuses writes (OOM); free memory on it (its largest keys: redis-cli --bigkeys) or raise its maxmemory`,
    ]);
    expect(room).toEqual([]);
    await redis.flushdb();
    const end = Date.now() + 5000;
    while (room.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(room).toHaveLength(1);
    expect(room[0]).toMatch(new RegExp(`^Redis at 127\\.0\\.0\\.1:${port} has room again \\(\\d+ MiB used of maxmemory 4 MiB\\)$`));
    // Full again later: said again.
    watch.saw(refusal);
    expect(full).toHaveLength(2);
    watch.stop();
  });
});
