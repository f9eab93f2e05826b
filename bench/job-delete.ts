// DELETE /v1/jobs/:id of a long finished job, through the app (buildApp with its real database,
// Redis and artifact store): how long the API's event loop stays blocked while it runs. On SQLite
// every statement runs synchronously on that loop; PostgreSQL's run off it.
//
//   npx tsx bench/job-delete.ts                        # SQLite and PostgreSQL, a 1000-epoch job
//   npx tsx bench/job-delete.ts --points 187500 --events 30000 --only sqlite
//   npx tsx bench/job-delete.ts --jobs 1000            # DELETE /v1/jobs?before= of a full job store
//
// Workload: one cancelled job holding `--points` metric points (1,875,000: Fashion-MNIST's 60,000
// images at batch 32 for 1000 epochs, the most a config allows) and `--events` progress events
// (100,000), bulk-inserted untimed. One line per database: the DELETE's status, its wall time, and
// the longest the event loop went without running a 5 ms timer (the figure to compare).
// With --jobs N: N cancelled jobs (MAX_STORED_JOBS_PER_KEY is 1000), each holding --points points
// (default then 9,375: Fashion-MNIST's default job, 5 epochs at batch 32) and --events events
// (default then 1,000), deleted page after page of 100 as the dashboard does; the line gives the
// pages, the total time and the longest stall.
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { startHarness, tinySynthetic, waitReady, type DbKind } from '../test/api/api-harness.js';

const { values: opt } = parseArgs({
  options: { points: { type: 'string' }, events: { type: 'string' }, jobs: { type: 'string' }, only: { type: 'string' } },
});
const jobs = opt.jobs === undefined ? 0 : Number(opt.jobs);
const points = Number(opt.points ?? (jobs ? 9375 : 1_875_000));
const events = Number(opt.events ?? (jobs ? 1000 : 100_000));
if (!(Number.isInteger(jobs) && jobs >= 0)) throw new Error('--jobs takes an integer >= 0');
if (!(Number.isInteger(points) && points >= 0 && Number.isInteger(events) && events >= 0)) throw new Error('--points and --events take integers >= 0');

/** Rows a long job leaves, inserted straight into the database (far faster than the API could). */
async function fill(kind: DbKind, h: Awaited<ReturnType<typeof startHarness>>, jobId: string): Promise<void> {
  if (kind === 'sqlite') {
    const db = new Database(h.settings.databaseUrl.replace(/^file:/, ''));
    const point = db.prepare('INSERT INTO MetricPoint (jobId, step, epoch, loss, learningRate, imagesPerSecond, revision) VALUES (?, ?, 1, 1.5, 0.05, 200, ?)');
    const event = db.prepare("INSERT INTO JobEvent (jobId, type, payload) VALUES (?, 'progress', ?)");
    const payload = JSON.stringify({ points: Array.from({ length: 7 }, (_, i) => ({ step: i, epoch: 1, loss: 1.2345, learningRate: 0.05 })) });
    db.transaction(() => {
      for (let s = 1; s <= points; s++) point.run(jobId, s, s);
      for (let e = 0; e < events; e++) event.run(jobId, payload);
    })();
    db.close();
    return;
  }
  const sql = h.deps.db.prisma.$executeRawUnsafe.bind(h.deps.db.prisma);
  await sql(
    `INSERT INTO "MetricPoint" ("jobId", step, epoch, loss, "learningRate", "imagesPerSecond", revision) SELECT $1, s, 1, 1.5, 0.05, 200, s FROM generate_series(1, ${points}) s`,
    jobId,
  );
  await sql(`INSERT INTO "JobEvent" ("jobId", type, payload) SELECT $1, 'progress', repeat('x', 400) FROM generate_series(1, ${events}) s`, jobId);
}

/** Runs `fn` with a 5 ms timer beside it: its wall time and the longest the timer was held up. */
async function timed<T>(fn: () => Promise<T>): Promise<{ result: T; ms: number; worst: number }> {
  let worst = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 5);
    last = now;
  }, 5);
  const t0 = performance.now();
  try {
    const result = await fn();
    return { result, ms: performance.now() - t0, worst };
  } finally {
    clearInterval(timer);
  }
}

for (const kind of ['sqlite', 'postgres'] as DbKind[]) {
  if (opt.only && opt.only !== kind) continue;
  const h = await startHarness(kind, { MAX_EVENT_LOOP_DELAY_MS: '0' });
  try {
    await waitReady(h);
    if (jobs) {
      const ids = Array.from({ length: jobs }, (_, i) => `bulk-${String(i).padStart(5, '0')}`);
      await h.deps.db.prisma.trainingJob.createMany({ data: ids.map((id) => ({ id, name: id, status: 'cancelled', config: '{}' })) });
      for (const id of ids) await fill(kind, h, id);
      const before = encodeURIComponent(new Date(Date.now() + 1000).toISOString());
      const { result, ms, worst } = await timed(async () => {
        let pages = 0;
        let deleted = 0;
        for (let cursor: string | null = null; pages === 0 || cursor; pages++) {
          const res: Awaited<ReturnType<typeof h.app.inject>> = await h.app.inject({
            method: 'DELETE',
            url: `/v1/jobs?before=${before}&limit=100${cursor ? `&cursor=${cursor}` : ''}`,
          });
          if (res.statusCode !== 200) throw new Error(`DELETE page ${pages + 1}: ${res.statusCode} ${res.body}`);
          const page: { deleted: string[]; nextCursor: string | null } = res.json();
          deleted += page.deleted.length;
          cursor = page.nextCursor;
        }
        return { pages, deleted };
      });
      console.log(
        `${kind}: bulk DELETE of ${jobs} jobs with ${points} points and ${events} events each -> ${result.deleted} deleted in ${result.pages} pages, ${(ms / 1000).toFixed(1)} s; event loop blocked at most ${worst.toFixed(0)} ms`,
      );
      continue;
    }
    const id = (await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinySynthetic })).json<{ id: string }>().id;
    await h.app.inject({ method: 'POST', url: `/v1/jobs/${id}/cancel` });
    await fill(kind, h, id);
    const { result: res, ms, worst } = await timed(() => h.app.inject({ method: 'DELETE', url: `/v1/jobs/${id}` }));
    console.log(
      `${kind}: DELETE of a job with ${points} points and ${events} events -> ${res.statusCode} in ${ms.toFixed(0)} ms; event loop blocked at most ${worst.toFixed(0)} ms`,
    );
  } finally {
    await h.close();
  }
}
