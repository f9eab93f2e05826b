/// <reference lib="dom" />
// The dashboard in Debian's chromium (playwright-core) against a real server (SQLite, real Redis)
// and a real worker process training a small job (MobileNetV2 0.35 at 32 px on synthetic images).
// Each feature is driven through the page: the new-job form and its field errors, live charts
// from the event stream, cancel, comparing runs, the models view (download, promote), the final
// evaluation, predict, CSV export, axe-core's WCAG A/AA rules, and a 360 px wide screen.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page, Request } from 'playwright-core';
import { KeyStore } from '../../src/auth/key-store.js';
import { JobView, MetricsPage } from '../../src/jobs/job-view.js';
import { startHarness, waitReady, type Harness } from '../api/api-harness.js';
import { assertBuilt, FAST_QUEUE_ENV, spawnWorker, type WorkerProc } from '../integration/worker-process.js';
import { makeImage } from '../serving/fixtures.js';
import { noteLacking } from '../../src/queue/dataset-holders.js';
import { WorkerBeacon } from '../../src/queue/worker-registry.js';
import { axeViolations, colourPixels, download, keyedContext, launchChromium } from './browser.js';

// web/charts.js PALETTE: loss and float top-1 in the first colour, int8 top-1 in the second,
// the learning rate in the fourth.
const BLUE = '#1f5bd1';
const RED = '#b3261e';
const BROWN = '#8a4b00';
/** The server's answer to a request over the per-second rate limit, for `page.route` to fake once. */
const RATE_LIMITED = {
  status: 429,
  headers: { 'retry-after': '1' },
  contentType: 'application/json',
  body: JSON.stringify({ error: { code: 'RATE_LIMITED', message: 'more than 20 requests in a second from this API key; retry in 1 s' } }),
};

describe('dashboard', () => {
  let h: Harness;
  let worker: WorkerProc;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  let base: string;
  let adminKey: string;
  let userKey: string;
  let liveId: string;
  const requests: string[] = [];
  // What the page's content security policy refused (Chromium logs each refusal as a console error).
  const refusedByPolicy: string[] = [];

  // The test's own calls use a key of their own: the page's key has its own rate-limit budget.
  let testKey: string;
  const api = async (method: string, url: string, key = testKey, payload?: object) => {
    let res = await h.app.inject({ method: method as 'GET', url, payload, headers: { authorization: `Bearer ${key}` } });
    // The test's polls are a client too: a 429 (over 20 a second) is waited out as its Retry-After says.
    for (let i = 0; i < 3 && res.statusCode === 429; i++) {
      await new Promise((r) => setTimeout(r, 1000 * Number(res.headers['retry-after'] ?? 1)));
      res = await h.app.inject({ method: method as 'GET', url, payload, headers: { authorization: `Bearer ${key}` } });
    }
    if (res.statusCode >= 400 && !(method === 'POST' && url.endsWith('/cancel'))) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res;
  };

  /** Posts a job of MobileNetV2 0.35 at 32 px (seconds on the test's worker) with the test's key; its id. */
  const postSmallJob = async (body: object) =>
    (await api('POST', '/v1/jobs', testKey, { model: { widthMultiplier: 0.35, inputSize: 32 }, ...body })).json().id as string;

  beforeAll(async () => {
    assertBuilt();
    h = await startHarness('sqlite', FAST_QUEUE_ENV);
    await waitReady(h);
    const keys = new KeyStore(h.deps.db.prisma);
    adminKey = (await keys.create('dash-admin', 'admin')).key;
    userKey = (await keys.create('dash-user', 'predict,train')).key;
    testKey = (await keys.create('dash-test', 'admin')).key;
    h.app.auth.forget();
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    worker = spawnWorker({ DATABASE_URL: h.settings.databaseUrl, DATA_DIR: h.settings.dataDir, QUEUE_PREFIX: h.settings.queuePrefix }, 'dashboard');
    browser = await launchChromium();
    admin = await keyedContext(browser, adminKey);
    page = await admin.newPage();
    page.on('request', (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}${new URL(r.url()).search}`));
    page.on('console', (m) => void (/Content Security Policy/i.test(m.text()) && refusedByPolicy.push(m.text())));
  });

  afterAll(async () => {
    await browser?.close();
    worker?.proc.kill('SIGTERM');
    await worker?.exited;
    await h?.close();
  });

  it('marks the fields a 400 names, keeps the raw response, and creates nothing', async () => {
    await page.goto(`${base}/`);
    await page.fill('#f-classes', '1');
    await page.fill('#f-epochs', '0');
    // The fields edit the JSON that is sent.
    expect(JSON.parse(await page.inputValue('#config'))).toMatchObject({ dataset: { classes: 1 }, training: { epochs: 0 } });
    await page.click('#new-job button[type=submit]');
    await expect.poll(() => page.getAttribute('#f-classes', 'aria-invalid')).toBe('true');
    expect(await page.getAttribute('#f-epochs', 'aria-invalid')).toBe('true');
    expect(await page.getAttribute('#f-batch', 'aria-invalid')).toBeNull();
    expect(await page.textContent('#f-classes-error')).toMatch(/2/);
    expect(await page.getAttribute('#f-classes', 'aria-describedby')).toBe('f-classes-error');
    expect(await page.textContent('#new-job-error')).toContain('dataset.classes');
    expect(await page.isVisible('#new-job-raw-error')).toBe(true);
    const raw = JSON.parse((await page.textContent('#new-job-raw-error pre'))!);
    expect(raw.error.code).toBe('CONFIG_INVALID');
    expect(raw.error.issues.map((i: { path: string }) => i.path)).toEqual(expect.arrayContaining(['dataset.classes', 'training.epochs']));
    // A setting without a field is fixed in the raw JSON, which the fields then follow.
    await page.click('#raw-json summary');
    await page.fill('#config', JSON.stringify({ dataset: { type: 'synthetic', classes: 3 }, training: { epochs: 2 } }));
    expect(await page.inputValue('#f-classes')).toBe('3');
    expect((await api('GET', '/v1/jobs')).json().jobs).toHaveLength(0);
  });

  it('starts a job from the form and follows it live: loss, learning rate and float vs int8 top-1 from the event stream', async () => {
    await page.goto(`${base}/`);
    await page.click('#raw-json summary');
    // valPerClass and delaySteps have no field: the raw JSON carries them. With quantization
    // starting after step 3, each evaluation measures the float model as well as the int8 one.
    await page.fill(
      '#config',
      JSON.stringify({
        name: 'browser-live',
        dataset: { type: 'synthetic', classes: 3, samplesPerClass: 8, valPerClass: 4, seed: 3 },
        quantization: { delaySteps: 3 },
      }),
    );
    await page.fill('#f-width', '0.35');
    await page.fill('#f-input-size', '32');
    await page.fill('#f-epochs', '2');
    await page.fill('#f-batch', '4');
    await page.click('#new-job button[type=submit]');
    await expect.poll(() => page.textContent('#job-title')).toContain('browser-live');
    liveId = (await api('GET', '/v1/jobs')).json().jobs[0].id;
    const job = JobView.parse((await api('GET', `/v1/jobs/${liveId}`)).json());
    expect(job.config).toMatchObject({
      dataset: { classes: 3, valPerClass: 4 },
      model: { widthMultiplier: 0.35, inputSize: 32 },
      training: { epochs: 2, batchSize: 4 },
    });

    await expect.poll(() => page.textContent('#live'), { timeout: 10_000 }).toBe('live');
    await expect.poll(() => page.textContent('#job-status'), { timeout: 30_000 }).toBe('running');
    // What the worker made of the data set, from the stream's start event (the page opened the job queued).
    await expect
      .poll(() => page.textContent('#job-facts'), { timeout: 30_000 })
      .toContain('datasynthetic: 3 classes, 24 train / 12 val (seed 3)classespattern-0, pattern-1, pattern-2');
    await expect.poll(() => colourPixels(page, '#chart-loss', BLUE), { timeout: 30_000 }).toBeGreaterThan(20);
    expect(await colourPixels(page, '#chart-lr', BROWN)).toBeGreaterThan(20);
    // The first epoch's validation: float and int8 points.
    await expect.poll(() => colourPixels(page, '#chart-acc', RED), { timeout: 30_000 }).toBeGreaterThan(5);
    expect(await colourPixels(page, '#chart-acc', BLUE)).toBeGreaterThan(5);
    expect(await page.textContent('#job-progress')).toMatch(/step \d+\/12/);
    // Updates came from the stream: the open job's metrics were never polled.
    expect(requests.filter((r) => r.startsWith(`GET /v1/jobs/${liveId}/events`)).length).toBeGreaterThanOrEqual(1);
    expect(requests.filter((r) => r.startsWith(`GET /v1/jobs/${liveId}/metrics`))).toEqual([]);
  });

  it("keeps the keyboard focus on a job's row while the job table refreshes", async () => {
    const button = page.locator(`#jobs tbody tr[data-job-id="${liveId}"] button.link`);
    await button.focus();
    // The table is polled every 3 s (and the live job's progress changes): two polls later the
    // focus is still on that row's button. A rebuilt table drops it to the page's body.
    const listings = () => requests.filter((r) => r.startsWith('GET /v1/jobs?')).length;
    const before = listings();
    await expect.poll(listings, { timeout: 10_000 }).toBeGreaterThanOrEqual(before + 2);
    await expect.poll(() => page.evaluate(() => document.activeElement?.closest('tr')?.dataset.jobId ?? document.activeElement?.tagName)).toBe(liveId);
  });

  it('cancels a job with its button (keyboard-operated); a late answer does not undo the end the stream brought', async () => {
    // Long enough (80 steps) to be seen running: the job table shows it only at its next poll (3 s).
    const toCancel = (
      await api('POST', '/v1/jobs', testKey, { name: 'to-cancel', dataset: { type: 'synthetic', classes: 2, samplesPerClass: 64 }, training: { epochs: 20 } })
    ).json().id as string;
    const row = page.locator(`#jobs tbody tr[data-job-id="${toCancel}"]`);
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    await row.locator('button.link').focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => page.textContent('#job-title'), { timeout: 10_000 }).toContain('to-cancel');
    // Running: the cancel answers `cancelling`, and the worker's stop follows within a second.
    await expect.poll(() => page.textContent('#job-status'), { timeout: 30_000 }).toBe('running');
    // The answer is held until the stream has brought `cancelled`.
    let answered = false;
    await page.route('**/cancel', async (route) => {
      const response = await route.fetch();
      await expect.poll(() => api('GET', `/v1/jobs/${toCancel}`).then((r) => r.json().status), { timeout: 15_000 }).toBe('cancelled');
      await new Promise((r) => setTimeout(r, 1000));
      await route.fulfill({ response });
      answered = true;
    });
    await page.focus('#cancel-job');
    await page.keyboard.press('Enter');
    await expect.poll(() => answered, { timeout: 20_000 }).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(await page.textContent('#job-status')).toBe('cancelled');
    expect(await page.isVisible('#cancel-job')).toBe(false);
    await page.unroute('**/cancel');
  });

  it('overlays up to five runs', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const id = (await api('POST', '/v1/jobs', testKey, { name: `cmp-${i}`, dataset: { type: 'synthetic' } })).json().id as string;
      await api('POST', `/v1/jobs/${id}/cancel`);
      ids.push(id);
    }
    await expect.poll(() => page.locator('#jobs tbody tr').count(), { timeout: 10_000 }).toBe(6);
    await page.check(`#jobs tr[data-job-id="${liveId}"] input[type=checkbox]`);
    for (const id of ids) await page.check(`#jobs tr[data-job-id="${id}"] input[type=checkbox]`);
    const sixth = page.locator('#jobs tbody tr', { hasText: 'to-cancel' }).locator('input[type=checkbox]');
    await sixth.click();
    expect(await sixth.isChecked()).toBe(false);
    expect(await page.textContent('#compare-note')).toContain('Up to 5');
    expect(await page.isVisible('#compare-panel')).toBe(true);
    await expect.poll(() => colourPixels(page, '#chart-compare', BLUE), { timeout: 10_000 }).toBeGreaterThan(20);
    // The ticks land while an earlier pull is still paging: the last run joins the chart a pull later.
    const legend = () => page.locator('#chart-compare .u-legend .u-series').allTextContents();
    await expect.poll(async () => (await legend()).filter((t) => /browser-live|cmp-\d/.test(t)).length, { timeout: 10_000 }).toBe(5);
    // Compared runs are paged with the revision cursor.
    expect(requests.some((r) => r.startsWith(`GET /v1/jobs/${liveId}/metrics?cursor=`))).toBe(true);
  });

  it('deletes a finished job with its button after a confirmation: its panel, row and comparison line go', async () => {
    const row = page.locator('#jobs tbody tr', { hasText: 'cmp-0' });
    const id = (await row.getAttribute('data-job-id'))!;
    await row.locator('button.link').click();
    // Its own title first: the panel still showed the job before (cancelled as well) for a moment.
    await expect.poll(() => page.textContent('#job-title'), { timeout: 10_000 }).toContain('cmp-0');
    await expect.poll(() => page.textContent('#job-status'), { timeout: 10_000 }).toBe('cancelled');
    expect(await page.isVisible('#cancel-job')).toBe(false);
    // Dismissed: nothing happens.
    page.once('dialog', (d) => void d.dismiss());
    await page.click('#delete-job');
    await new Promise((r) => setTimeout(r, 300));
    expect((await api('GET', `/v1/jobs/${id}`)).statusCode).toBe(200);
    expect(await page.isVisible('#job-panel')).toBe(true);
    let asked = '';
    page.once('dialog', (d) => {
      asked = d.message();
      void d.accept();
    });
    // The page's own bursts can meet the per-second rate limit: a 429 with a short Retry-After is
    // waited out, not shown.
    let deletes = 0;
    await page.route(`**/v1/jobs/${id}`, (route) =>
      route.request().method() === 'DELETE' && deletes++ === 0 ? route.fulfill(RATE_LIMITED) : route.continue(),
    );
    await page.click('#delete-job');
    await expect.poll(() => page.isVisible('#job-panel'), { timeout: 10_000 }).toBe(false);
    await page.unroute(`**/v1/jobs/${id}`);
    expect([asked, deletes]).toEqual([expect.stringContaining('cmp-0'), 2]);
    expect(await page.textContent('#job-error')).toBe('');
    expect((await h.app.inject({ method: 'GET', url: `/v1/jobs/${id}`, headers: { authorization: `Bearer ${testKey}` } })).statusCode).toBe(404);
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(0);
    await expect.poll(() => page.locator('#chart-compare .u-legend .u-series', { hasText: 'cmp-0' }).count(), { timeout: 10_000 }).toBe(0);
    expect(await page.locator('#chart-compare .u-legend .u-series', { hasText: /cmp-\d/ }).count()).toBe(3);
    expect(page.url()).not.toContain('#job=');
  });

  it('shows the finished job: evaluation, confusion matrix and per-class accuracy; exports its metrics as CSV', async () => {
    await page.goto(`${base}/#job=${liveId}`);
    const until = Date.now() + 60_000;
    for (;;) {
      const j = JobView.parse((await api('GET', `/v1/jobs/${liveId}`)).json());
      if (j.status === 'succeeded') break;
      if (j.status === 'failed' || Date.now() > until) throw new Error(`job ${j.status}: ${JSON.stringify(j.error)}\n${worker.output().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    await expect.poll(() => page.textContent('#job-status'), { timeout: 10_000 }).toBe('succeeded');
    await expect.poll(() => page.isVisible('#evaluation'), { timeout: 10_000 }).toBe(true);
    const job = JobView.parse((await api('GET', `/v1/jobs/${liveId}`)).json());
    const evaluation = (await api('GET', `/v1/models/${job.model!.id}/evaluation`)).json().evaluation;
    expect(evaluation).not.toBeNull();
    await expect
      .poll(async () => [await page.locator('#per-class tbody tr').count(), await page.textContent('#evaluation-summary')], { timeout: 10_000 })
      .toEqual([3, expect.stringContaining('validation images')]);
    expect(await page.locator('#confusion tbody tr').count()).toBe(3);
    const cells = await page.locator('#confusion tbody td').allTextContents();
    expect(cells.map(Number)).toEqual(evaluation.confusion.flat());
    expect(await page.textContent('#evaluation-summary')).toContain(`${evaluation.images} validation images`);
    // A stream refused by the rate limit (a reload is a burst of requests) is retried with backoff.
    await expect.poll(() => page.textContent('#live'), { timeout: 10_000 }).toBe('finished');

    const csv = await download(page, '#export-csv');
    expect(csv.name).toBe(`metrics-browser-live-${liveId}.csv`);
    const lines = csv.bytes.toString('utf8').trim().split('\r\n');
    expect(lines[0]).toBe('step,epoch,loss,learningRate,imagesPerSecond,top1,top5,floatTop1,revision');
    const points = MetricsPage.parse((await api('GET', `/v1/jobs/${liveId}/metrics?cursor=0&limit=1000`)).json()).points.sort((a, b) => a.step - b.step);
    expect(lines.length - 1).toBe(points.length);
    expect(lines.slice(1).map((l) => Number(l.split(',')[2]))).toEqual(points.map((p) => p.loss));
  });

  it('lists the most frequent mistakes instead of a matrix for a model of over 100 classes', async () => {
    // The API's side (a 1,000-class model's evaluation) is tested in predict-routes; here its answer.
    const modelId = JobView.parse((await api('GET', `/v1/jobs/${liveId}`)).json()).model!.id;
    const classes = Array.from({ length: 150 }, (_, i) => `kind-${i}`);
    const evaluation = {
      images: 1500,
      top1: 0.6,
      top5: 0.9,
      perClassTop1: classes.map(() => 0.6),
      perClassImages: classes.map(() => 10),
      confusion: null,
      topConfusions: [
        { actual: 3, predicted: 7, count: 4 },
        { actual: 0, predicted: 149, count: 2 },
      ],
    };
    await page.route(`**/v1/models/${modelId}/evaluation`, (route) => route.fulfill({ json: { modelId, classes, evaluation } }));
    await page.reload();
    await expect.poll(() => page.locator('#mistakes tbody tr').count(), { timeout: 10_000 }).toBe(2);
    expect(await page.locator('#mistakes tbody tr').first().locator('td').allTextContents()).toEqual(['kind-3', 'kind-7', '4']);
    expect(await page.isVisible('#confusion-box')).toBe(false);
    expect(await page.locator('#per-class tbody tr').count()).toBe(150);
    // Its 150 rows scroll inside the panel, which stays about a screen tall (4,887 px before).
    expect((await page.locator('#evaluation').boundingBox())!.height).toBeLessThan(1200);
    await page.unroute(`**/v1/models/${modelId}/evaluation`);
  });

  it('still offers an admin the promote button when its first admin probe met the rate limit', async () => {
    const ctx = await keyedContext(browser, adminKey);
    const p = await ctx.newPage();
    let probes = 0;
    await p.route('**/v1/keys', (route) => (probes++ === 0 ? route.fulfill(RATE_LIMITED) : route.continue()));
    await p.goto(`${base}/`);
    await expect.poll(() => p.locator('#models button.promote').count(), { timeout: 15_000 }).toBeGreaterThan(0);
    expect(probes).toBeGreaterThanOrEqual(2);
    await ctx.close();
  });

  it('lists models with validation top-1, what quantization cost, size against fp32 and the serving one; downloads and promotes (admin only)', async () => {
    const job = JobView.parse((await api('GET', `/v1/jobs/${liveId}`)).json());
    const model = job.model!;
    const row = page.locator(`#models tr[data-model-id="${model.id}"]`);
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    const text = (await row.textContent())!;
    // Top-1 from the final evaluation on the whole validation split, not the export's subset; and
    // what quantization cost, float and int8 on the same verification images.
    expect(model.validationImages).toBeGreaterThan(0);
    expect(text).toContain(
      `${(model.validationTop1! * 100).toFixed(1)}%top-5 ${(model.validationTop5! * 100).toFixed(1)}%; ${model.validationImages} validation images`,
    );
    const points = (model.int8Top1! - model.floatTop1!) * 100;
    expect(text).toContain(`${points < 0 ? '−' : '+'}${Math.abs(points).toFixed(1)} pt`);
    expect(text).toContain(`float ${(model.floatTop1! * 100).toFixed(1)}%, int8 ${(model.int8Top1! * 100).toFixed(1)}% on ${model.verificationImages} images`);
    expect(text).toContain(`${(model.float32SizeBytes / model.sizeBytes).toFixed(1)}× smaller than fp32`);
    expect(await row.locator('.pill.serving').textContent()).toBe('serving');
    // A model exported before rows kept its final evaluation (an upgraded database): the export's
    // verification figure, said so.
    await page.route('**/v1/models?*', async (route) => {
      const res = await route.fetch();
      const body = (await res.json()) as { items: object[] };
      for (const m of body.items) Object.assign(m, { validationTop1: null, validationTop5: null, validationImages: null, verificationImages: null });
      await route.fulfill({ response: res, json: body });
    });
    await expect.poll(() => row.textContent(), { timeout: 10_000 }).toContain(`${(model.int8Top1! * 100).toFixed(1)}%the verification images`);
    await page.unroute('**/v1/models?*');

    const file = await download(page, `#models tr[data-model-id="${model.id}"] button[aria-label^="download"]`);
    expect(file.name).toBe(`model-${model.id}.onnx`);
    expect(createHash('sha256').update(file.bytes).digest('hex')).toBe(model.sha256);

    // A key without admin sees no promote button.
    const user = await keyedContext(browser, userKey);
    const userPage = await user.newPage();
    await userPage.goto(`${base}/`);
    await expect.poll(() => userPage.locator(`#models tr[data-model-id="${model.id}"]`).count(), { timeout: 10_000 }).toBe(1);
    expect(await userPage.locator('#models button.promote').count()).toBe(0);
    await user.close();

    await row.locator('button.promote').click();
    await expect.poll(() => row.locator('.pill.serving').textContent(), { timeout: 15_000 }).toBe('serving · promoted');
    expect((await api('GET', '/v1/models')).json().items[0].promotedAt).not.toBeNull();
  });

  it('predicts an uploaded image: the image, top-k bars and timings', async () => {
    const png = await makeImage('png', 48, 48, 2);
    await page.setInputFiles('#predict-file', { name: 'sample.png', mimeType: 'image/png', buffer: png });
    await expect.poll(() => page.locator('#predictions li').count(), { timeout: 15_000 }).toBe(3); // 3 classes
    expect(await page.isVisible('#predict-image')).toBe(true);
    expect(await page.getAttribute('#predict-image', 'alt')).toContain('sample.png');
    const widths = await page.locator('#predictions .bar').evaluateAll((bars) => bars.map((b) => (b as HTMLElement).getBoundingClientRect().width));
    expect(widths[0]).toBeGreaterThanOrEqual(widths[2]);
    const sum = (await page.locator('#predictions .value').allTextContents()).reduce((s, t) => s + parseFloat(t), 0);
    expect(sum).toBeGreaterThan(99);
    expect(await page.textContent('#predict-timings')).toMatch(/decode [\d.]+ ms · queue [\d.]+ ms · inference [\d.]+ ms · batch of \d+/);
    // A file the browser has no type for (no extension) goes as application/octet-stream: the
    // bytes say what it is (it was a bare 415 "Unsupported Media Type" until the thirty-fifth session).
    await page.evaluate(() => document.querySelector('#predictions')!.replaceChildren());
    await page.setInputFiles('#predict-file', { name: 'scan', mimeType: '', buffer: await makeImage('jpeg', 48, 48, 3) });
    await expect.poll(() => page.locator('#predictions li').count(), { timeout: 15_000 }).toBe(3);
    expect(await page.textContent('#predict-error')).toBe('');
  });

  it('classifies several images at once: a row each, in order, an unreadable one saying why', async () => {
    await page.setInputFiles('#predict-file', [
      { name: 'first.png', mimeType: 'image/png', buffer: await makeImage('png', 48, 48, 4) },
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a picture') },
      { name: 'third.jpg', mimeType: 'image/jpeg', buffer: await makeImage('jpeg', 40, 56, 5) },
    ]);
    // A row each at once ("waiting"), filled in as the answer comes.
    await expect.poll(() => page.textContent('#predict-timings'), { timeout: 15_000 }).toMatch(/^model \w{8} · 3 of 3 images$/);
    const rows = await page
      .locator('#predict-batch tbody tr')
      .evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent)));
    expect(rows.map((r) => r[0])).toEqual(['first.png', 'notes.txt', 'third.jpg']);
    expect(rows[1][1]).toMatch(/^IMAGE_UNSUPPORTED_FORMAT: /);
    for (const r of [rows[0], rows[2]]) expect([r[1], r[2]]).toEqual([expect.stringMatching(/^pattern-\d$/), expect.stringMatching(/^[\d.]+%$/)]);
    expect(await page.isVisible('#predict-image')).toBe(false);
    expect(await page.locator('#predictions li').count()).toBe(0);
  });

  /** Two images picked in the page end up with a class each (seeds `seed` and `seed + 1`). */
  const classifiesTwo = async (seed: number) => {
    await page.setInputFiles('#predict-file', [
      { name: 'a.png', mimeType: 'image/png', buffer: await makeImage('png', 48, 48, seed) },
      { name: 'b.jpg', mimeType: 'image/jpeg', buffer: await makeImage('jpeg', 40, 56, seed + 1) },
    ]);
    await expect.poll(() => page.textContent('#predict-timings'), { timeout: 15_000 }).toMatch(/^model \w{8} · 2 of 2 images$/);
    const labels = await page.locator('#predict-batch tbody tr td:nth-child(2)').allTextContents();
    expect(labels).toEqual([expect.stringMatching(/^pattern-\d$/), expect.stringMatching(/^pattern-\d$/)]);
  };

  it("waits out a busy server's 503 (Retry-After) and sends the images again instead of failing them", async () => {
    // The predictor queue full (PREDICT_OVERLOADED: another client's folder, say) for the first request.
    let refused = 0;
    await page.route('**/v1/predict/batch*', async (route) => {
      if (refused++ > 0) return route.continue();
      await route.fulfill({
        status: 503,
        headers: { 'retry-after': '1', 'content-type': 'application/json' },
        body: JSON.stringify({ error: { code: 'PREDICT_OVERLOADED', message: 'the predictor queue is full; retry in 1 s', issues: [] } }),
      });
    });
    try {
      await classifiesTwo(6);
      expect(refused).toBe(2);
    } finally {
      await page.unroute('**/v1/predict/batch*');
    }
  });

  it('sends an image again when the server had no room to decode it (PREDICT_OVERLOADED in its result), not failing it', async () => {
    // Other clients' AVIF uploads hold the decoder: the server answers the batch, this image refused in it.
    const sent: number[] = [];
    await page.route('**/v1/predict/batch*', async (route) => {
      sent.push((route.request().postData() ?? '').split('name="image"').length - 1);
      if (sent.length > 1) return route.continue();
      const real = await route.fetch();
      const body = (await real.json()) as { results: unknown[] };
      body.results[0] = {
        index: 0,
        filename: 'a.png',
        error: { code: 'PREDICT_OVERLOADED', message: '17 AVIF images are being decoded or waiting already (one at a time); retry shortly' },
      };
      await route.fulfill({ response: real, json: body });
    });
    try {
      await classifiesTwo(8);
      expect(sent).toEqual([2, 1]); // both, then the refused one alone
    } finally {
      await page.unroute('**/v1/predict/batch*');
    }
  });

  it("classifies phone photos in requests within the server's byte limit; a file over it alone is named, not sent", async () => {
    // 12 MP JPEGs of 3.7 MB, as phones take them: three of them are over the 10 MB a request may
    // carry, so sixteen to a request (as the page once sent) got a 413 for all of them.
    const photo = () =>
      sharp(randomBytes(504 * 378 * 3), { raw: { width: 504, height: 378, channels: 3 } })
        .resize(4032, 3024, { kernel: 'cubic' })
        .jpeg({ quality: 90 })
        .toBuffer();
    const photos = await Promise.all(Array.from({ length: 5 }, photo));
    const scan = await sharp(randomBytes(2000 * 1900 * 3), { raw: { width: 2000, height: 1900, channels: 3 } })
      .png({ compressionLevel: 1 })
      .toBuffer();
    const limits = (await api('GET', '/v1/predict/limits')).json();
    expect(photos[0].length * 3).toBeGreaterThan(limits.maxBytesPerRequest);
    expect(scan.length).toBeGreaterThan(limits.maxBytesPerRequest);
    const files = photos.map((buffer, i) => ({ name: `IMG_${i}.jpg`, mimeType: 'image/jpeg', buffer }));
    files.splice(2, 0, { name: 'scan.png', mimeType: 'image/png', buffer: scan });
    const sent = requests.length;
    await page.setInputFiles('#predict-file', files);
    await expect.poll(() => page.textContent('#predict-timings'), { timeout: 30_000 }).toMatch(/^model \w{8} · 6 of 6 images$/);
    const rows = await page
      .locator('#predict-batch tbody tr')
      .evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent)));
    expect(rows.map((r) => r[0])).toEqual(files.map((f) => f.name));
    expect(rows[2][1]).toBe(`BODY_TOO_LARGE: the image is larger than the limit of ${limits.maxBytesPerRequest} bytes`);
    for (const r of rows.filter((_, i) => i !== 2)) expect([r[1], r[2]]).toEqual([expect.stringMatching(/^pattern-\d$/), expect.stringMatching(/^[\d.]+%$/)]);
    expect(await page.textContent('#predict-error')).toBe('');
    // Two photos a request, and the scan never uploaded.
    expect(requests.slice(sent).filter((r) => r.startsWith('POST /v1/predict/batch'))).toHaveLength(3);
  });

  it('runs under a policy that lets only its own scripts run and no other site frame it: nothing the page did above was refused', async () => {
    const res = await fetch(`${base}/ui/`);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect((await fetch(`${base}/healthz`)).headers.get('x-content-type-options')).toBe('nosniff');
    // The charts drew, jobs ran, images were picked and shown (blob: URLs), CSVs were saved.
    expect(refusedByPolicy).toEqual([]);
    // And the policy does refuse: an inline script the page did not ship does not run.
    await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'window.__inlineRan = true';
      document.body.append(s);
    });
    expect(await page.evaluate(() => (window as unknown as { __inlineRan?: boolean }).__inlineRan ?? false)).toBe(false);
    await expect.poll(() => refusedByPolicy.length).toBeGreaterThan(0);
  });

  it('passes axe-core (WCAG 2.1 A and AA) with everything on screen', async () => {
    expect(await page.isVisible('#keys-panel')).toBe(true); // an admin's page: the keys too
    expect(await axeViolations(page)).toEqual([]);
  });

  it('fits the jobs table in its column at 1,024 px, a long job name and every column included', async () => {
    const prisma = h.deps.db.prisma;
    const long = await prisma.trainingJob.create({
      data: { id: randomUUID(), name: 'mobilenetv2_flowers102_224px_qat_run3', status: 'cancelled', config: '{}' },
    });
    const context = await keyedContext(browser, adminKey, { width: 1024, height: 768 });
    try {
      const p = await context.newPage();
      await p.goto(`${base}/`);
      await p.waitForSelector(`#jobs tr[data-job-id="${long.id}"]`);
      const region = await p.evaluate(() => {
        const scroll = document.querySelector('#jobs-panel .scroll')!;
        return { scrollWidth: scroll.scrollWidth, clientWidth: scroll.clientWidth };
      });
      expect(region.scrollWidth).toBeLessThanOrEqual(region.clientWidth);
      // Created today: the time alone (with the date if midnight passed since), the full date and time on hover.
      const created = p.locator(`#jobs tr[data-job-id="${long.id}"] time`);
      expect(await created.textContent()).toMatch(/^([A-Z][a-z]{2} \d{1,2}, )?\d{1,2}:\d{2}( [AP]M)?$/);
      expect(await created.getAttribute('title')).toMatch(/\d{4}/);
    } finally {
      await context.close();
      await prisma.trainingJob.delete({ where: { id: long.id } });
    }
  });

  it('stays usable at 360 px: no sideways scrolling, charts and controls fit', async () => {
    const narrow = await keyedContext(browser, adminKey, { width: 360, height: 740 });
    const p = await narrow.newPage();
    await p.goto(`${base}/#job=${liveId}`);
    await expect.poll(() => p.textContent('#job-status'), { timeout: 10_000 }).toBe('succeeded');
    await expect.poll(() => colourPixels(p, '#chart-loss', BLUE), { timeout: 10_000 }).toBeGreaterThan(20);
    await p.click('#cleanup summary');
    expect(await p.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    for (const sel of [
      '#chart-loss canvas',
      '#chart-acc canvas',
      '#new-job button[type=submit]',
      '#cancel-job, #export-csv',
      '#predict-file',
      '#f-epochs',
      '#cleanup-days',
      '#cleanup-delete',
      '#key-name',
      '#key-form button[type=submit]',
    ]) {
      const box = await p.locator(sel).first().boundingBox();
      if (box) expect(box.x + box.width, sel).toBeLessThanOrEqual(360);
    }
    expect(await p.locator('#f-epochs').isVisible()).toBe(true);
    expect(await axeViolations(p)).toEqual([]);
    await narrow.close();
  });

  it('draws a long job from its sampled curve and follows it from its newest event, not from the first', async () => {
    // The finished job's history made long: 30,000 more points, as a long run leaves them.
    const prisma = h.deps.db.prisma;
    const first = (await prisma.metricPoint.findFirst({ where: { jobId: liveId }, orderBy: { step: 'desc' } }))!.step + 1;
    const steps = Array.from({ length: 30_000 }, (_, i) => first + i);
    await prisma.metricPoint.createMany({
      data: steps.map((step) => ({ jobId: liveId, step, epoch: 2, loss: 1 / Math.sqrt(step), learningRate: 0.01, imagesPerSecond: 100, revision: 1 })),
    });
    await prisma.trainingJob.update({ where: { id: liveId }, data: { step: steps.at(-1) } });
    const newest = (await prisma.jobEvent.findFirst({ where: { jobId: liveId }, orderBy: { id: 'desc' } }))!.id;

    const context = await keyedContext(browser, adminKey);
    const p = await context.newPage();
    const asked: Array<{ url: string; lastEventId: string | undefined }> = [];
    p.on('request', (r) => asked.push({ url: new URL(r.url()).pathname + new URL(r.url()).search, lastEventId: r.headers()['last-event-id'] }));
    await p.goto(`${base}/#job=${liveId}`);
    await expect.poll(() => p.textContent('#live'), { timeout: 10_000 }).toBe('finished');
    await expect.poll(() => colourPixels(p, '#chart-loss', BLUE), { timeout: 10_000 }).toBeGreaterThan(20);
    expect(asked.some((r) => r.url === `/v1/jobs/${liveId}/curve?points=2000`)).toBe(true);
    const streams = asked.filter((r) => r.url === `/v1/jobs/${liveId}/events`);
    expect(streams.map((r) => r.lastEventId)).toEqual([String(newest)]);
    // The charts hold a sample; the CSV holds every point.
    const csv = await download(p, '#export-csv');
    const rows = csv.bytes.toString('utf8').trim().split('\r\n');
    expect(rows.length - 1).toBe(await prisma.metricPoint.count({ where: { jobId: liveId } }));
    expect(rows.at(-1)!.split(',')[0]).toBe(String(steps.at(-1)));

    // Then a short job from the list: its charts span its own steps. Until the forty-fifth session
    // the top-1 chart kept the long job's axis (ticks to 30,000) while it had no point of its own.
    expect(await p.getAttribute('#chart-acc', 'aria-label')).toContain(`to ${steps.at(-1)!.toLocaleString('en-US')}`);
    const short = 'short-job';
    await prisma.trainingJob.create({ data: { id: short, name: 'short run', status: 'failed', config: '{}', step: 3, totalSteps: 9 } });
    // A short job is drawn from its event stream (a `metric` event per point, as a worker writes).
    const points = [1, 2, 3].map((step) => ({
      step,
      epoch: 1,
      loss: 2 - step / 10,
      learningRate: 0.01,
      imagesPerSecond: 100,
      top1: null,
      top5: null,
      floatTop1: null,
      revision: 1,
    }));
    await prisma.jobEvent.createMany({ data: points.map((pt) => ({ jobId: short, type: 'metric', payload: JSON.stringify(pt) })) });
    await p.locator(`#jobs tr[data-job-id="${short}"] button.link`).click({ timeout: 10_000 });
    await expect
      .poll(() => p.getAttribute('#chart-loss', 'aria-label'), { timeout: 10_000 })
      .toBe('training loss by step: steps 1 to 3, 3 points; last loss 1.7 at step 3');
    expect(await p.getAttribute('#chart-acc', 'aria-label')).toBe('validation top-1 by step, float and int8: steps 1 to 3, no points yet');
    await context.close();
    await prisma.trainingJob.delete({ where: { id: short } });
  });

  it("lists a job's warnings in words", async () => {
    const prisma = h.deps.db.prisma;
    const id = 'warned-job';
    const warning = (code: string, message: string) => ({ jobId: id, type: 'warning', payload: JSON.stringify({ code, message }) });
    // Rows as a worker leaves them: the count on the job, each text a `warning` event.
    await prisma.trainingJob.create({ data: { id, name: 'phone photos', status: 'failed', config: '{}', warnings: 2 } });
    await prisma.jobEvent.createMany({
      data: [
        warning(
          'FORMAT_UNREAD',
          'skipped 280 image files in other formats (.heic 280): only JPEG, PNG, WebP, GIF, TIFF and AVIF are read; convert them to train on them',
        ),
        warning('CLASS_EMPTY', 'class folder "ferns" has no readable training images; it is not a class'),
      ],
    });
    // A skipped file's message names its whole path: on a phone it wraps instead of widening the page.
    const path = `/srv/datasets/${'pets-2026-photos-from-the-shelter/'.repeat(4)}IMG_20260101_120000.jpg`;
    await prisma.jobEvent.create({ data: warning('IMAGE_UNREADABLE', `skipped ${path}: Input file has corrupt header`) });
    await prisma.trainingJob.update({ where: { id }, data: { warnings: 3 } });
    const context = await keyedContext(browser, adminKey);
    const p = await context.newPage();
    await p.goto(`${base}/#job=${id}`);
    await expect
      .poll(() => p.locator('#job-warning-list li').allTextContents(), { timeout: 10_000 })
      .toEqual([
        'FORMAT_UNREAD skipped 280 image files in other formats (.heic 280): only JPEG, PNG, WebP, GIF, TIFF and AVIF are read; convert them to train on them',
        'CLASS_EMPTY class folder "ferns" has no readable training images; it is not a class',
        `IMAGE_UNREADABLE skipped ${path}: Input file has corrupt header`,
      ]);
    expect(await p.textContent('#job-facts')).toContain('warnings3');
    expect(await axeViolations(p)).toEqual([]);
    const narrow = await keyedContext(browser, adminKey, { width: 360, height: 740 });
    const phone = await narrow.newPage();
    await phone.goto(`${base}/#job=${id}`);
    await expect.poll(() => phone.locator('#job-warning-list li').count(), { timeout: 10_000 }).toBe(3);
    expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    // Nor is the path cut off: the item holds all of its text.
    const item = phone.locator('#job-warning-list li').last();
    expect(await item.evaluate((li) => li.scrollWidth <= li.clientWidth)).toBe(true);
    const box = await item.boundingBox();
    expect(box!.x + box!.width).toBeLessThanOrEqual(360);
    await narrow.close();
    // Another job opened from the table: the list is that job's (none, or its own).
    await p.locator(`#jobs tbody tr[data-job-id="${liveId}"] button.link`).click();
    await expect.poll(() => p.textContent('#job-title'), { timeout: 10_000 }).toContain(liveId);
    const live = JobView.parse((await api('GET', `/v1/jobs/${liveId}`)).json());
    await expect.poll(() => p.isVisible('#job-warnings'), { timeout: 10_000 }).toBe(live.warnings > 0);
    expect((await p.locator('#job-warning-list li').allTextContents()).join('\n')).not.toContain('FORMAT_UNREAD');
    await context.close();
  });

  it('lists the newest 20 models and more on "older models"', async () => {
    // 25 models older than the real ones (rows only: the list shows them, nothing loads them).
    const prisma = h.deps.db.prisma;
    const real = await prisma.model.count();
    for (let i = 0; i < 25; i++) {
      const jobId = `old-job-${i}`;
      await prisma.trainingJob.create({ data: { id: jobId, name: `old-${i}`, status: 'succeeded', config: '{}' } });
      await prisma.model.create({
        data: {
          id: `old-model-${String(i).padStart(2, '0')}`,
          jobId,
          createdAt: new Date(Date.UTC(2020, 0, 1 + i)),
          onnxKey: `${jobId}/model.onnx`,
          manifestKey: `${jobId}/manifest.json`,
          sizeBytes: 1000,
          float32SizeBytes: 3000,
          sha256: '0'.repeat(64),
          inputSize: 32,
          classes: '["a","b"]',
        },
      });
    }
    const context = await keyedContext(browser, adminKey);
    const p = await context.newPage();
    await p.goto(`${base}/`);
    await expect.poll(() => p.locator('#models tbody tr').count(), { timeout: 10_000 }).toBe(20);
    expect(await p.isVisible('#more-models')).toBe(true);
    await p.click('#more-models');
    await expect.poll(() => p.locator('#models tbody tr').count(), { timeout: 10_000 }).toBe(real + 25);
    // The newest first: the real models, then the old ones from the newest down.
    expect(await p.locator('#models tbody tr').last().getAttribute('data-model-id')).toBe('old-model-00');
    expect(await p.isVisible('#more-models')).toBe(false);
    await context.close();
  });

  it("says what a job at its last step is doing: the evaluation's images scored so far, then the export", async () => {
    // One step, then 1,000 validation images: the evaluation and the export take seconds.
    const id = await postSmallJob({
      name: 'phases',
      dataset: { type: 'synthetic', classes: 4, samplesPerClass: 4, valPerClass: 250, seed: 9 },
      training: { epochs: 1, batchSize: 16, maxSteps: 1 },
    });
    await page.goto(`${base}/#job=${id}`);
    const progress = () => page.textContent('#job-progress');
    await expect.poll(progress, { timeout: 60_000, interval: 50 }).toMatch(/^step 1\/1 \(100%\) · epoch 1.* · evaluating: .+, [\d,]+ of 1,000 images$/);
    await expect.poll(progress, { timeout: 60_000, interval: 50 }).toMatch(/ · exporting: /);
    await expect.poll(() => page.textContent('#job-status'), { timeout: 60_000 }).toBe('succeeded');
    expect(await progress()).not.toMatch(/evaluating|exporting/);
    // The model's top-1 is the final evaluation's, on all 1,000 validation images.
    const { model } = JobView.parse((await api('GET', `/v1/jobs/${id}`)).json());
    const pct = (x: number | null) => `${(x! * 100).toFixed(1)}%`;
    await expect
      .poll(() => page.textContent('#job-facts'), { timeout: 10_000 })
      .toContain(`model top-1 (int8)${pct(model!.validationTop1)} (top-5 ${pct(model!.validationTop5)}; 1,000 validation images)`);
  });

  it("says how much training a running job has left, from the server's estimate, and how long a finished one took", async () => {
    // 1,000 steps of 4 images at 32 px: long enough to see the estimate (the job is cancelled then).
    const id = await postSmallJob({
      name: 'eta',
      dataset: { type: 'synthetic', classes: 4, samplesPerClass: 1000, valPerClass: 2, seed: 5 },
      training: { epochs: 1, batchSize: 4 },
    });
    await page.goto(`${base}/#job=${id}`);
    await expect
      .poll(() => page.textContent('#job-progress'), { timeout: 60_000, interval: 50 })
      .toMatch(/^step \d+\/1000 \(\d+%\) · epoch 1 · [\d.]+ img\/s · (under a minute|about \d+ min) of training left$/);
    // The job table says it too, shorter.
    await expect
      .poll(() => page.locator(`#jobs tr[data-job-id="${id}"] td`).nth(3).textContent(), { timeout: 60_000, interval: 50 })
      .toMatch(/^\d+\/1000 \(\d+%\) · (under a minute|about \d+ min) left$/);
    // A browser whose clock runs 3 hours behind the server's says the same: the page reckons from
    // the server's clock (the answers' Date header), not its own ("about 3 h 1 min" before).
    const skewed = await keyedContext(browser, adminKey);
    await skewed.addInitScript(
      'const D = Date; globalThis.Date = class extends D { constructor(...a) { super(...(a.length ? a : [D.now() - 3 * 3600e3])); } static now() { return D.now() - 3 * 3600e3; } };',
    );
    const skewedPage = await skewed.newPage();
    await skewedPage.goto(`${base}/#job=${id}`);
    await expect
      .poll(() => skewedPage.textContent('#job-progress'), { timeout: 30_000, interval: 50 })
      .toMatch(/^step \d+\/1000 \(\d+%\) · epoch 1 · [\d.]+ img\/s · (under a minute|about \d+ min) of training left$/);
    await skewed.close();
    const running = JobView.parse((await api('GET', `/v1/jobs/${id}`)).json());
    if (running.status === 'running' && running.progress.step < 1000) expect(Date.parse(running.progress.trainingEndsAt!)).toBeGreaterThan(Date.now() - 5_000);
    await api('POST', `/v1/jobs/${id}/cancel`);
    await expect.poll(() => page.textContent('#job-status'), { timeout: 30_000 }).toBe('cancelled');
    expect(await page.textContent('#job-progress')).not.toContain('left');
    await expect.poll(() => page.textContent('#job-facts'), { timeout: 10_000 }).toMatch(/took\d+ s/);
  });

  it("starts a new job from a finished one's settings, or from its weights (fine-tuning), with the job's buttons", async () => {
    await page.goto(`${base}/#job=${liveId}`);
    await expect.poll(() => page.textContent('#job-status'), { timeout: 10_000 }).toBe('succeeded');
    const source = JobView.parse((await api('GET', `/v1/jobs/${liveId}`)).json());
    // The same run again: every setting as it ran, in the JSON and the fields.
    await page.click('#rerun-job');
    expect(JSON.parse(await page.inputValue('#config'))).toEqual(source.config);
    expect([await page.inputValue('#f-epochs'), await page.inputValue('#f-batch'), await page.inputValue('#f-from-job')]).toEqual(['2', '4', '']);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('f-name');
    expect(await page.textContent('#new-job-note')).toContain('every setting as it ran');

    // A job id that names no job is marked on its field, and nothing is created.
    const jobCount = (await api('GET', '/v1/jobs?limit=100')).json().jobs.length;
    await page.fill('#f-from-job', 'no-such-job');
    await page.click('#new-job button[type=submit]');
    await expect.poll(() => page.getAttribute('#f-from-job', 'aria-invalid'), { timeout: 10_000 }).toBe('true');
    expect(await page.textContent('#f-from-job-error')).toBe('job "no-such-job" does not exist or has no checkpoint to start from');
    expect((await api('GET', '/v1/jobs?limit=100')).json().jobs).toHaveLength(jobCount);

    // From its weights: one more epoch on the same data at a smaller learning rate.
    await page.click('#finetune-job');
    expect(await page.getAttribute('#f-from-job', 'aria-invalid')).toBeNull();
    expect([await page.inputValue('#f-from-job'), await page.inputValue('#f-name')]).toEqual([liveId, 'browser-live (fine-tuned)']);
    await page.fill('#f-epochs', '1');
    await page.fill('#f-lr', '0.01');
    await page.click('#new-job button[type=submit]');
    await expect.poll(() => page.textContent('#job-title'), { timeout: 10_000 }).toContain('browser-live (fine-tuned)');
    expect(await page.textContent('#new-job-note')).toBe('');
    const id = decodeURIComponent(/job=([^&]+)/.exec(new URL(page.url()).hash)![1]);
    const tuned = JobView.parse((await api('GET', `/v1/jobs/${id}`)).json());
    expect(tuned.config).toEqual({
      ...source.config,
      name: 'browser-live (fine-tuned)',
      training: { ...source.config.training, epochs: 1, learningRate: 0.01 },
      init: { fromJob: liveId },
    });
    // The panel names the job it started from, as a way back to it.
    await expect.poll(() => page.textContent('#job-facts'), { timeout: 10_000 }).toContain("started from job's weightsbrowser-live");
    await expect.poll(() => page.textContent('#job-status'), { timeout: 60_000 }).toBe('succeeded');
    // The worker started it from the source's newest checkpoint (test/ml/train.test.ts checks the weights load).
    expect(worker.output()).toMatch(new RegExp(`"jobId":"${id}".*"initFrom":"[^"]*${liveId}[^"]*"`));
    await page.locator('#job-facts button.link', { hasText: 'browser-live' }).click();
    await expect.poll(() => page.textContent('#job-title'), { timeout: 10_000 }).toBe(`browser-live (${liveId})`);
  });

  it('resumes a cancelled job with its button: the worker goes on from its checkpoint, and the panel follows it to its end', async () => {
    const id = await postSmallJob({
      name: 'to-resume',
      dataset: { type: 'synthetic', classes: 2, samplesPerClass: 32 },
      training: { epochs: 3, batchSize: 8, checkpointEverySteps: 1 },
    });
    await expect
      .poll(async () => JobView.parse((await api('GET', `/v1/jobs/${id}`)).json()).progress.step, { timeout: 60_000, interval: 200 })
      .toBeGreaterThanOrEqual(3);
    await api('POST', `/v1/jobs/${id}/cancel`);
    await expect.poll(async () => JobView.parse((await api('GET', `/v1/jobs/${id}`)).json()).status, { timeout: 30_000, interval: 200 }).toBe('cancelled');
    const stoppedAt = JobView.parse((await api('GET', `/v1/jobs/${id}`)).json()).progress.step;
    await page.goto(`${base}/#job=${id}`);
    await expect.poll(() => page.textContent('#job-status'), { timeout: 10_000 }).toBe('cancelled');
    expect(await page.isVisible('#resume-job')).toBe(true);
    await page.click('#resume-job');
    await expect.poll(() => page.textContent('#job-status'), { timeout: 90_000 }).toBe('succeeded');
    expect(await page.isVisible('#resume-job')).toBe(false);
    expect(await page.textContent('#job-error')).toBe('');
    expect(worker.output()).toMatch(new RegExp(`"jobId":"${id}".*"resumeStep":${stoppedAt}`));
    const done = JobView.parse((await api('GET', `/v1/jobs/${id}`)).json());
    expect(done.progress.step).toBe(done.progress.totalSteps);
    const points = MetricsPage.parse((await api('GET', `/v1/jobs/${id}/metrics?limit=1000`)).json()).points;
    expect(points.map((p) => p.step)).toEqual(Array.from({ length: done.progress.step }, (_, i) => i + 1));
  });

  it('starts one job for a double-click on "Start training"; an edited config is a new job', async () => {
    await page.goto(`${base}/`);
    await page.click('#raw-json summary');
    const config = { name: 'double-click', dataset: { type: 'synthetic', classes: 2, samplesPerClass: 4 }, training: { epochs: 1, maxSteps: 1 } };
    await page.fill('#config', JSON.stringify({ ...config, model: { widthMultiplier: 0.35, inputSize: 32 } }));
    const named = async (name: string) => (await api('GET', '/v1/jobs?limit=100')).json().jobs.filter((j: { name: string }) => j.name === name);
    const keys: string[] = [];
    const posted = (r: Request) => void (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/jobs' && keys.push(r.headers()['idempotency-key']));
    page.on('request', posted);
    try {
      await page.dblclick('#new-job button[type=submit]');
      await expect.poll(() => keys.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
      await expect.poll(() => page.textContent('#job-title'), { timeout: 10_000 }).toContain('double-click (');
      // Both clicks' requests (and any the page sent again after a 429) carry one key.
      const first = keys.splice(0);
      expect(new Set(first).size).toBe(1);
      expect(await named('double-click')).toHaveLength(1);
      await page.fill('#f-name', 'double-click 2');
      await page.click('#new-job button[type=submit]');
      // (The form's error, if any, shows in a failure's message.)
      await expect
        .poll(async () => `${await page.textContent('#job-title')} / ${await page.textContent('#new-job-error')}`, { timeout: 10_000 })
        .toContain('double-click 2 (');
      expect(new Set(keys).size).toBe(1);
      expect(keys[0]).not.toBe(first[0]);
      expect(await named('double-click 2')).toHaveLength(1);
      // Both finish (one step each) before the next test stops the worker.
      await expect
        .poll(async () => [...(await named('double-click')), ...(await named('double-click 2'))].map((j: { status: string }) => j.status), { timeout: 60_000 })
        .toEqual(['succeeded', 'succeeded']);
    } finally {
      page.off('request', posted);
    }
  });

  // Last: it stops the worker.
  it('shows an admin the live workers, and that queued jobs wait when none runs (the job panel too); other keys see no worker list', async () => {
    const context = await keyedContext(browser, adminKey);
    const p = await context.newPage();
    await p.goto(`${base}/`);
    const pill = p.locator('#workers');
    await expect.poll(() => pill.textContent(), { timeout: 15_000 }).toMatch(/^workers: 1 (idle|training)$/);
    expect(await pill.getAttribute('title')).toContain(`:${worker.proc.pid}: `);
    expect(await pill.getAttribute('class')).toBe('pill ready');

    const user = await keyedContext(browser, userKey);
    const userPage = await user.newPage();
    const probed = userPage.waitForResponse((r) => new URL(r.url()).pathname === '/v1/keys');
    await userPage.goto(`${base}/`);
    expect((await probed).status()).toBe(403);
    await expect.poll(() => userPage.locator('#health').textContent(), { timeout: 10_000 }).toBe('ready');
    expect(await userPage.isHidden('#workers')).toBe(true);
    await user.close();

    worker.proc.kill('SIGTERM');
    await worker.exited;
    // Stopped, it is away (it may be restarting: WORKER_RESTART_GRACE_S); the pill says so.
    await expect.poll(() => pill.textContent(), { timeout: 15_000 }).toBe('no workers: queued jobs wait (1 away, likely restarting)');
    expect(await pill.getAttribute('title')).toMatch(new RegExp(`:${worker.proc.pid}: away, last heard from `));
    expect(await pill.getAttribute('class')).toBe('pill unready');

    // A job posted now waits; its panel says where it stands and why (the stopped worker may be
    // restarting: it counts as away for WORKER_RESTART_GRACE_S).
    const queued = JobView.parse(
      (await api('POST', '/v1/jobs', testKey, { dataset: { type: 'synthetic', classes: 2, samplesPerClass: 4 }, name: 'waits' })).json(),
    );
    await p.goto(`${base}/#job=${queued.id}`);
    await expect
      .poll(() => p.locator('#job-queue').textContent(), { timeout: 10_000 })
      .toMatch(/^(next in line|\d+ jobs? ahead) · no worker is running: it starts when one does · 1 worker away, likely restarting$/);
    // A worker (on another machine, say) took it and has no such image folder: the panel says it waits for one that has.
    const elsewhere = new WorkerBeacon(h.deps.redis, h.settings.queuePrefix, { dataDir: h.dir, dataRoot: h.dir, trainThreads: 1 });
    elsewhere.start();
    await noteLacking(h.deps.redis, h.settings.queuePrefix, queued.id, elsewhere.id);
    await expect
      .poll(() => p.locator('#job-queue').textContent(), { timeout: 10_000 })
      .toMatch(
        /^(next in line|\d+ jobs? ahead) · workers: 1 idle · 1 worker away, likely restarting · 1 worker has no such image folder: it waits for one that has it$/,
      );
    await elsewhere.stop();
    await context.close();
  });

  // Last: it deletes the finished jobs the tests above left.
  it('deletes finished jobs created before a time, page after page, and lists those the server kept; a full job store points there', async () => {
    const prisma = h.deps.db.prisma;
    // 120 finished jobs from 2020 (rows only), more than one page of the bulk deletion.
    const old = new Date(Date.UTC(2020, 5, 1));
    await prisma.trainingJob.createMany({
      data: Array.from({ length: 120 }, (_, i) => ({
        id: `bulk-${i}`,
        name: `bulk-${i}`,
        status: i % 2 ? 'failed' : 'cancelled',
        config: '{}',
        createdAt: old,
      })),
    });
    // Rows only (some with an empty config): id, name and status are what this test reads.
    type Listed = { id: string; name: string; status: string };
    const jobs = async () => {
      const all: Listed[] = [];
      for (let cursor: string | null = null; ;) {
        const page: { jobs: Listed[]; nextCursor: string | null } = (await api('GET', `/v1/jobs?limit=100${cursor ? `&cursor=${cursor}` : ''}`)).json();
        all.push(...page.jobs);
        if (!(cursor = page.nextCursor)) return all;
      }
    };
    const before = await jobs();
    const recent = before.filter((j) => !j.id.startsWith('bulk-'));
    const finished = recent.filter((j) => ['succeeded', 'failed', 'cancelled'].includes(j.status));
    const servingJob = (await api('GET', '/v1/models?limit=100')).json().items.find((m: { serving: boolean }) => m.serving).jobId;
    expect(finished.map((j) => j.id)).toContain(servingJob);
    expect(recent.some((j) => j.status === 'queued')).toBe(true);

    const context = await keyedContext(browser, adminKey);
    const p = await context.newPage();
    // The page sends a request the server refused for the moment (429 or 503 with Retry-After: its
    // own bursts, a loaded machine) again after the wait; a CI run saw the first page sent twice.
    const deletes: Array<{ search: string; status: number }> = [];
    p.on('response', (r) => void (r.request().method() === 'DELETE' && deletes.push({ search: new URL(r.url()).search, status: r.status() })));
    const cancelled = finished.find((j) => j.status === 'cancelled')!;
    await p.goto(`${base}/#job=${cancelled.id}`);
    await expect.poll(() => p.textContent('#job-status'), { timeout: 10_000 }).toBe('cancelled');
    await p.click('#cleanup summary');
    // Dismissed: nothing goes.
    p.once('dialog', (d) => void d.dismiss());
    await p.click('#cleanup-delete');
    await new Promise((r) => setTimeout(r, 300));
    expect(await jobs()).toHaveLength(before.length);

    // Older than 30 days (the default): the 120 from 2020, over two pages; nothing of today.
    let asked = '';
    p.once('dialog', (d) => {
      asked = d.message();
      void d.accept();
    });
    await p.click('#cleanup-delete');
    await expect.poll(() => p.textContent('#cleanup-note'), { timeout: 20_000 }).toBe('Deleted 120 jobs.');
    expect(asked).toMatch(/^Delete every finished job of every key created before .+, with its metrics, checkpoints and model\? This cannot be undone\.$/);
    expect(deletes.filter((d) => d.status !== 200).every((d) => d.status === 429 || d.status === 503)).toBe(true);
    expect(deletes.filter((d) => d.status === 200).map((d) => d.search)).toEqual([
      expect.stringMatching(/^\?before=\d{4}-.*&limit=100$/),
      expect.stringMatching(/&cursor=/),
    ]);
    expect((await jobs()).map((j) => j.id).sort()).toEqual(recent.map((j) => j.id).sort());

    // Every cancelled job of today: the open one's panel closes.
    await p.fill('#cleanup-days', '0');
    await p.selectOption('#cleanup-status', 'cancelled');
    p.once('dialog', (d) => void d.accept());
    await p.click('#cleanup-delete');
    const cancelledCount = finished.filter((j) => j.status === 'cancelled').length;
    await expect.poll(() => p.textContent('#cleanup-note'), { timeout: 20_000 }).toBe(`Deleted ${cancelledCount} job${cancelledCount === 1 ? '' : 's'}.`);
    await expect.poll(() => p.isVisible('#job-panel'), { timeout: 10_000 }).toBe(false);
    await expect.poll(() => p.locator(`#jobs tbody tr[data-job-id="${cancelled.id}"]`).count(), { timeout: 10_000 }).toBe(0);

    // Every finished job: the one whose model serves stays, and the note says why; unfinished ones stay.
    await p.selectOption('#cleanup-status', '');
    p.once('dialog', (d) => void d.accept());
    await p.click('#cleanup-delete');
    await expect.poll(() => p.textContent('#cleanup-note'), { timeout: 20_000 }).toMatch(/^Deleted \d+ jobs?\.\nKept "[^"]+": .*promote another/);
    const left = await jobs();
    expect(left.filter((j) => ['succeeded', 'failed', 'cancelled'].includes(j.status)).map((j) => j.id)).toEqual([servingJob]);
    expect(
      left
        .filter((j) => j.status === 'queued')
        .map((j) => j.id)
        .sort(),
    ).toEqual(
      recent
        .filter((j) => j.status === 'queued')
        .map((j) => j.id)
        .sort(),
    );
    expect(await p.textContent('#cleanup-note')).toContain(`Kept "${finished.find((j) => j.id === servingJob)!.name}"`);
    expect(await axeViolations(p)).toEqual([]);

    // A key whose job store is full is pointed here when it posts a job.
    await p.route('**/v1/jobs', (route) =>
      route.request().method() === 'POST'
        ? route.fulfill({
            status: 429,
            contentType: 'application/json',
            body: JSON.stringify({ error: { code: 'JOB_STORE_QUOTA_EXCEEDED', message: 'this API key already has 1000 jobs stored' } }),
          })
        : route.continue(),
    );
    await p.reload();
    expect(await p.getAttribute('#cleanup', 'open')).toBeNull();
    await p.click('#new-job button[type=submit]');
    await expect
      .poll(() => p.textContent('#new-job-error'))
      .toBe('JOB_STORE_QUOTA_EXCEEDED: this API key already has 1000 jobs stored\nUse "Delete finished jobs" under the job list.');
    expect(await p.getAttribute('#cleanup', 'open')).toBe('');
    await context.close();
  });
});
