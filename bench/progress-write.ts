// The worker's once-a-second progress write (JobOwner.steps: the steps its training thread reported
// since the last write, the job's progress, their metric and progress events), measured in CPU
// time of this process per write: that time is taken from the cores the job trains on.
//
//   npx tsx bench/progress-write.ts                   # SQLite file and PostgreSQL, 300 writes each
//   npx tsx bench/progress-write.ts --writes 1000 --steps-per-write 4 --only sqlite
//
// Workload: one running job, each write `--steps-per-write` new steps (10: a 0.35@32 job's steps
// in a second; a 224 px job reports 2-3), after 30 untimed writes. PostgreSQL at
// 127.0.0.1:5432, database `test` (TEST_PG_URL), in a schema of its own that is dropped after.
// One line per database: ms of CPU (user + system) and of wall per write.
import { parseArgs } from 'node:util';
import { openDatabase } from '../src/db/database.js';
import { migrate } from '../src/db/migrate.js';
import { claim, insertQueued } from '../src/jobs/job-lifecycle.js';
import { TrainingConfig } from '../src/config/training-config.js';
import { dropSchema, pgUrl, tempSqliteUrl, uniqueSchema } from '../test/db/test-databases.js';
import fs from 'node:fs';

const { values: opt } = parseArgs({
  options: {
    writes: { type: 'string', default: '300' },
    'steps-per-write': { type: 'string', default: '10' },
    only: { type: 'string' },
  },
});
const writes = Number(opt.writes);
const perWrite = Number(opt['steps-per-write']);
if (!(Number.isInteger(writes) && writes > 0 && Number.isInteger(perWrite) && perWrite > 0)) {
  throw new Error('--writes and --steps-per-write take positive integers');
}

async function measure(kind: string, url: string): Promise<void> {
  await migrate(url);
  const db = openDatabase(url);
  try {
    const config = TrainingConfig.parse({ dataset: { type: 'synthetic' } });
    const { row } = await insertQueued(db.prisma, { id: 'bench-job', name: 'progress-write', config });
    const c = await claim(db.prisma, row.id);
    if (c.kind !== 'claimed') throw new Error(`job not claimed: ${c.kind}`);
    let step = 0;
    const write = () =>
      c.owner.steps(
        Array.from({ length: perWrite }, () => {
          step++;
          return { step, epoch: 1 + Math.floor(step / 1000), loss: 2.3 / Math.sqrt(step), learningRate: 0.05, imagesPerSecond: 23.4 };
        }),
      );
    for (let i = 0; i < 30; i++) await write();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < writes; i++) await write();
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    console.log(
      `progress-write db=${kind} writes=${writes} steps-per-write=${perWrite}: ${(cpuMs / writes).toFixed(2)} ms CPU per write (wall ${(wall / writes).toFixed(2)} ms)`,
    );
  } finally {
    await db.close();
  }
}

if (!opt.only || opt.only === 'sqlite') {
  const { url, dir } = tempSqliteUrl('progress-write');
  try {
    await measure('sqlite', url);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
if (!opt.only || opt.only === 'postgres') {
  const schema = uniqueSchema('progress_write');
  try {
    await measure('postgres', pgUrl(schema));
  } finally {
    await dropSchema(schema);
  }
}
