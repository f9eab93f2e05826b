// Listing the deployment's workers (listFleet: what POST /v1/jobs, GET /v1/jobs/:id/queue and
// /metrics read) in a Redis that holds many other keys, as a busy deployment's does: rate-limit
// counters (one per client and window), queue entries, event channels.
//
//   npx tsx bench/fleet-list.ts                      # 100,000 other keys, 4 workers
//   npx tsx bench/fleet-list.ts --keys 1000000 --workers 50
//
// Workload: `--keys` unrelated keys and `--workers` workers (half live, half away within the grace
// period), written untimed into Redis database 15 of REDIS_URL's server (flushed before and after:
// keep nothing there). One line: the median time of 50 listings (the figure to compare), and what
// they found.
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { listFleet, writeEntry, type WorkerView } from '../src/queue/worker-registry.js';

const { values: opt } = parseArgs({ options: { keys: { type: 'string' }, workers: { type: 'string' } } });
const otherKeys = Number(opt.keys ?? 100_000);
const workers = Number(opt.workers ?? 4);
if (!(Number.isInteger(otherKeys) && otherKeys >= 0 && Number.isInteger(workers) && workers >= 0)) throw new Error('--keys and --workers take integers >= 0');

const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
url.pathname = '/15';
const redis = new Redis(url.toString());
await redis.flushdb();
try {
  for (let i = 0; i < otherKeys; i += 1000) {
    const tx = redis.multi();
    for (let j = i; j < Math.min(otherKeys, i + 1000); j++) tx.set(`bench:rate:key-${j}`, '1', 'EX', 600);
    await tx.exec();
  }
  const now = new Date().toISOString();
  for (let w = 0; w < workers; w++) {
    const view: WorkerView = {
      ...{ id: `host-${w}:1`, host: `host-${w}`, pid: 1, state: 'idle', jobId: null, reason: null, trainThreads: 2, memoryBudgetBytes: 2 ** 30 },
      ...{ seat: `seat-${w}`, disk: { freeBytes: 1e12, totalBytes: 2e12 }, startedAt: now, since: now, seenAt: now },
    };
    await writeEntry(redis, 'bench', view, w % 2 === 0);
  }
  const times: number[] = [];
  let found = { live: 0, away: 0 };
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    const fleet = await listFleet(redis, 'bench', 600_000);
    times.push(performance.now() - t);
    found = { live: fleet.live.length, away: fleet.away.length };
  }
  times.sort((a, b) => a - b);
  console.log(
    `listFleet, ${otherKeys} other keys, ${workers} workers: median ${times[25].toFixed(2)} ms per listing (found ${found.live} live, ${found.away} away)`,
  );
} finally {
  await redis.flushdb();
  redis.disconnect();
}
