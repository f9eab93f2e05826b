// DELETE /v1/jobs/:id of a long finished job, through the app (buildApp with its real database,
// Redis and artifact store): how long the API's event loop stays blocked while it runs. On SQLite
// every statement runs synchronously on that loop; PostgreSQL's run off it.
//
//   npx tsx bench/job-delete.ts                        # SQLite and PostgreSQL, a 1000-epoch job
//   npx tsx bench/job-delete.ts --points 187500 --events 30000 --only sqlite
//
// Workload: one cancelled job holding `--points` metric points (1,875,000: Fashion-MNIST's 60,000
// images at batch 32 for 1000 epochs, the most a config allows) and `--events` progress events
// (100,000), bulk-inserted untimed. One line per database: the DELETE's status, its wall time, and
// the longest the event loop went without running a 5 ms timer (the figure to compare).
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { startHarness, tinySynthetic, waitReady, type DbKind } from '../test/api/api-harness.js';

const { values: opt } = parseArgs({
  options: { points: { type: 'string', default: '1875000' }, events: { type: 'string', default: '100000' }, only: { type: 'string' } },
});
const points = Number(opt.points);
const events = Number(opt.events);
if (!(Number.isInteger(points) && points >= 0 && Number.isInteger(events) && events >= 0)) throw new Error('--points and --events take integers >= 0');

/** Rows a 1000-epoch job leaves, inserted straight into the database (far faster than the API could). */
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

for (const kind of ['sqlite', 'postgres'] as DbKind[]) {
  if (opt.only && opt.only !== kind) continue;
  const h = await startHarness(kind, { MAX_EVENT_LOOP_DELAY_MS: '0' });
  try {
    await waitReady(h);
    const id = (await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinySynthetic })).json<{ id: string }>().id;
    await h.app.inject({ method: 'POST', url: `/v1/jobs/${id}/cancel` });
    await fill(kind, h, id);
    let worst = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last - 5);
      last = now;
    }, 5);
    const t0 = performance.now();
    const res = await h.app.inject({ method: 'DELETE', url: `/v1/jobs/${id}` });
    const ms = performance.now() - t0;
    clearInterval(timer);
    console.log(
      `${kind}: DELETE of a job with ${points} points and ${events} events -> ${res.statusCode} in ${ms.toFixed(0)} ms; event loop blocked at most ${worst.toFixed(0)} ms`,
    );
  } finally {
    await h.close();
  }
}
