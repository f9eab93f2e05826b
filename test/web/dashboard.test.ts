/// <reference lib="dom" />
// The dashboard in a real browser (Debian's chromium driven by playwright-core) against a real
// server: SQLite, real Redis. A job is created through the page's form, its loss curve is drawn
// from the metrics API, and it is cancelled with the page's button.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startHarness, waitReady, type Harness } from '../api/api-harness.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('dashboard', () => {
  let h: Harness;
  let browser: Browser;
  let page: Page;
  let base: string;

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium (.ci/run does)`);
    h = await startHarness('sqlite');
    await waitReady(h);
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it('shows the API\'s field errors for an invalid config and creates nothing', async () => {
    await page.goto(`${base}/`);
    await page.fill('#config', JSON.stringify({ dataset: { type: 'synthetic', classes: 1 }, model: { depth: 3 } }));
    await page.click('#new-job button[type=submit]');
    const error = page.locator('#new-job-error');
    await expect.poll(() => error.textContent()).toContain('dataset.classes');
    expect(await error.textContent()).toContain('model');
    const list = await h.app.inject({ method: 'GET', url: '/v1/jobs' });
    expect(list.json().jobs).toHaveLength(0);
  });

  it('creates a job, draws its loss curve from the metrics API and cancels it', async () => {
    await page.goto(`${base}/`);
    await page.fill('#config', JSON.stringify({ name: 'browser-job', dataset: { type: 'synthetic', classes: 3 } }));
    await page.click('#new-job button[type=submit]');
    await expect.poll(() => page.locator('#job-title').textContent()).toContain('browser-job');
    await expect.poll(() => page.locator('#jobs tbody tr').count()).toBe(1);
    const id = (await page.locator('#jobs tbody tr').getAttribute('data-job-id'))!;

    // Points as a worker writes them: a falling loss, and validation accuracy at the epoch end.
    const prisma = h.deps.db.prisma;
    for (let step = 1; step <= 20; step++) {
      await prisma.metricPoint.create({
        data: { jobId: id, step, epoch: step <= 10 ? 1 : 2, loss: 2.5 - step * 0.08, learningRate: 0.05, imagesPerSecond: 30,
          top1: step === 10 ? 0.62 : step === 20 ? 0.81 : null, top5: step % 10 === 0 ? 1 : null },
      });
    }
    await expect.poll(() => page.locator('#job-facts').textContent(), { timeout: 10_000 }).toContain('81.0%');
    // The chart has pixels in the loss colour (#2e6be6) and the accuracy colour (#2f8a4c).
    const colours = await page.evaluate(() => {
      const c = document.querySelector<HTMLCanvasElement>('#loss-chart')!;
      const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let loss = 0, acc = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i] === 0x2e && data[i + 1] === 0x6b && data[i + 2] === 0xe6) loss++;
        if (data[i] === 0x2f && data[i + 1] === 0x8a && data[i + 2] === 0x4c) acc++;
      }
      return { loss, acc };
    });
    expect(colours.loss).toBeGreaterThan(100);
    expect(colours.acc).toBeGreaterThan(20);

    await page.click('#cancel-job');
    await expect.poll(() => page.locator('#job-status').textContent()).toBe('cancelled');
    const job = await h.app.inject({ method: 'GET', url: `/v1/jobs/${id}` });
    expect(job.json().status).toBe('cancelled');
  });
});
