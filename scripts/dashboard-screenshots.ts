/// <reference lib="dom" />
// Writes docs/screenshots/*.png for the README: a throw-away deployment (SQLite in a temp folder,
// the local Redis with a queue prefix of its own, one `qatserve worker` from dist/) trains two
// small real jobs, and Debian's chromium photographs the dashboard while the second one trains
// and once everything has finished. Run after `npm run build`:
//   npx tsx scripts/dashboard-screenshots.ts        (CHROMIUM_PATH overrides /usr/bin/chromium)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import sharp from 'sharp';
import { openApiDeps } from '../src/api/api-deps.js';
import { buildApp } from '../src/api/app.js';
import { loadSettings } from '../src/config/settings.js';
import { bindDeployment } from '../src/db/deployment.js';
import { migrate } from '../src/db/migrate.js';

const OUT = path.resolve('docs/screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const job = (name: string, lr: number) => ({
  name,
  dataset: { type: 'synthetic', classes: 4, samplesPerClass: 24, valPerClass: 8, seed: 3 },
  model: { widthMultiplier: 0.35, inputSize: 32 },
  training: { epochs: 4, batchSize: 8, learningRate: lr },
  quantization: { delaySteps: 12 },
});

async function main() {
  if (!fs.existsSync('dist/cli.js')) throw new Error('run `npm run build` first (the worker runs from dist/)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-shots-'));
  const databaseUrl = `file:${path.join(dir, 'db.sqlite')}`;
  const env = { DATABASE_URL: databaseUrl, DATA_DIR: dir, QUEUE_PREFIX: `qs-shots-${process.pid}`, LOG_LEVEL: 'warn' };
  const { deploymentId } = await migrate(databaseUrl);
  const settings = bindDeployment(loadSettings(env), deploymentId);
  const deps = openApiDeps(settings, false);
  const app = await buildApp(deps);
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const worker = spawn(process.execPath, ['dist/cli.js', 'worker'], { env: { ...process.env, ...env, QATSERVE_SKIP_MIGRATE: '1' }, stdio: 'inherit' });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
  try {
    const post = async (body: object) => (await app.inject({ method: 'POST', url: '/v1/jobs', payload: body })).json().id as string;
    const status = async (id: string) => (await app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json<{ status: string; progress: { step: number } }>();
    const waitFor = async (id: string, pred: (j: { status: string; progress: { step: number } }) => boolean) => {
      for (const until = Date.now() + 600_000; Date.now() < until; await new Promise((r) => setTimeout(r, 500))) {
        const j = await status(id);
        if (pred(j)) return j;
        if (j.status === 'failed') throw new Error(`job ${id} failed`);
      }
      throw new Error(`job ${id}: timed out`);
    };
    const first = await post(job('lr-0.05', 0.05));
    await waitFor(first, (j) => j.status === 'succeeded');
    const second = await post(job('lr-0.2', 0.2));
    await waitFor(second, (j) => j.progress.step >= 30);

    fs.mkdirSync(OUT, { recursive: true });
    const shoot = async (page: Page, name: string) => {
      await page.waitForTimeout(800); // let the charts draw
      await page.screenshot({ path: path.join(OUT, name), fullPage: true });
      await sharp(path.join(OUT, name))
        .png({ compressionLevel: 9, palette: true })
        .toFile(path.join(OUT, `${name}.tmp`));
      fs.renameSync(path.join(OUT, `${name}.tmp`), path.join(OUT, name));
      console.log(`wrote docs/screenshots/${name}`);
    };
    const desktop = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await desktop.goto(`${base}/#job=${second}`);
    await desktop.waitForSelector('#live:text("live")');
    for (const id of [first, second]) await desktop.check(`#jobs tr[data-job-id="${id}"] input[type=checkbox]`);
    await shoot(desktop, 'dashboard-live.png');

    await waitFor(second, (j) => j.status === 'succeeded');
    await desktop.goto(`${base}/#job=${first}`);
    await desktop.waitForSelector('#per-class tbody tr');
    const png = await sharp({ create: { width: 48, height: 48, channels: 3, background: { r: 200, g: 80, b: 40 } } })
      .png()
      .toBuffer();
    await desktop.setInputFiles('#predict-file', { name: 'sample.png', mimeType: 'image/png', buffer: png });
    await desktop.waitForSelector('#predictions li');
    await shoot(desktop, 'dashboard-finished.png');

    const phone = await browser.newPage({ viewport: { width: 360, height: 740 } });
    await phone.goto(`${base}/#job=${second}`);
    await phone.waitForSelector('#job-status:text("succeeded")');
    await shoot(phone, 'dashboard-360px.png');
  } finally {
    await browser.close();
    worker.kill('SIGTERM');
    await new Promise((r) => worker.once('exit', r));
    await app.close();
    await deps.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
