/// <reference lib="dom" />
// The dashboard against a server that needs a key (Debian's chromium via playwright-core): it asks
// for one on the first 401, then lists the jobs with it, and asks again when the key is refused.
// And a server with no key yet (auth off on loopback): its own dashboard changes jobs, another
// site's page in the same browser cannot.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { KeyStore } from '../../src/auth/key-store.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from '../api/api-harness.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('dashboard with API keys', () => {
  let h: Harness;
  let browser: Browser;
  let base: string;
  let key: string;

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium (.ci/run does)`);
    h = await startHarness('sqlite');
    await waitReady(h);
    key = (await new KeyStore(h.deps.db.prisma).create('browser', 'train')).key;
    h.app.auth.forget(); // as `qatserve keys create` would be seen within 2 s
    const created = await h.app.inject({
      method: 'POST',
      url: '/v1/jobs',
      payload: { ...tinySynthetic, name: 'keyed-job' },
      headers: { authorization: `Bearer ${key}` },
    });
    expect(created.statusCode).toBe(201);
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
  });
  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it('asks for a key on 401, then shows the jobs with it; a refused key is asked for again', async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/`);
    const form = page.locator('#api-key-form');
    await expect.poll(() => form.isVisible(), { timeout: 10_000 }).toBe(true);
    expect(await page.locator('#api-key-error').textContent()).toContain('needs an API key');
    expect(await page.locator('#jobs tbody tr').count()).toBe(0);

    await page.fill('#api-key', key);
    await page.click('#api-key-form button[type=submit]');
    await expect.poll(() => page.locator('#jobs tbody tr').count(), { timeout: 10_000 }).toBe(1);
    expect(await page.locator('#jobs tbody').textContent()).toContain('keyed-job');
    expect(await form.isVisible()).toBe(false);

    await new KeyStore(h.deps.db.prisma).revoke('browser');
    h.app.auth.forget();
    await expect.poll(() => form.isVisible(), { timeout: 10_000 }).toBe(true);
    expect(await page.locator('#api-key-error').textContent()).toContain('The key was refused');
    await page.close();
  });
});

describe('dashboard with no key yet (auth off on loopback)', () => {
  let h: Harness;
  let browser: Browser;
  let port: number;
  let site: http.Server;

  const queued = async (name: string) => {
    const r = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: { ...tinySynthetic, name } });
    expect(r.statusCode).toBe(201);
    return r.json().id as string;
  };
  const status = async (id: string) => (await h.app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json().status as string;

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: apt-get install chromium (.ci/run does)`);
    h = await startHarness('sqlite');
    await waitReady(h);
    port = Number(new URL(await h.app.listen({ port: 0, host: '127.0.0.1' })).port);
    // Any other site: an empty page the browser opens, whose scripts then try the API.
    site = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>another site</title>'));
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => site?.close(r));
    await h?.close();
  });

  it("cancels a job with the dashboard's own button", async () => {
    const id = await queued('open-job');
    const page = await browser.newPage();
    await page.goto(`http://localhost:${port}/`);
    const row = page.locator(`#jobs tbody tr[data-job-id="${id}"]`);
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    await row.locator('button.link').click();
    await expect.poll(() => page.textContent('#job-title'), { timeout: 10_000 }).toContain('open-job');
    await page.click('#cancel-job');
    await expect.poll(() => status(id), { timeout: 10_000 }).toBe('cancelled');
    await page.close();
  });

  it('shows the API docs (Swagger UI) under a policy that runs only its own scripts: every operation listed, nothing refused', async () => {
    const page = await browser.newPage();
    const refused: string[] = [];
    page.on('console', (m) => void (/Content Security Policy/i.test(m.text()) && refused.push(m.text())));
    const answer = await page.goto(`http://localhost:${port}/docs/`);
    const policy = (await answer!.allHeaders())['content-security-policy'];
    expect(policy).toContain("script-src 'self'");
    expect(policy).toContain("frame-ancestors 'none'");
    // A plain-HTTP server on another host would have its own assets sent to https:// by this.
    expect(policy).not.toContain('upgrade-insecure-requests');
    await expect.poll(() => page.locator('.opblock').count(), { timeout: 15_000 }).toBeGreaterThan(20);
    expect(await page.locator('.opblock-summary-path').allTextContents()).toContain('/v1/predict');
    expect(refused).toEqual([]);
    await page.close();
  });

  it("refuses the changes another site's page sends through the browser: a no-cors fetch and a form post change nothing", async () => {
    // Neither asks the API first (no CORS preflight), and the Host they name is localhost.
    const other = (site.address() as AddressInfo).port;
    for (const origin of [`http://127.0.0.1:${other}`, `http://localhost:${other}`]) {
      const [byFetch, byForm] = [await queued('fetch-target'), await queued('form-target')];
      const page = await browser.newPage();
      await page.goto(`${origin}/`);
      const fetched = page.waitForResponse((r) => r.url().endsWith(`/v1/jobs/${byFetch}/cancel`));
      await page.evaluate((url) => fetch(url, { method: 'POST', mode: 'no-cors' }).then(() => undefined), `http://localhost:${port}/v1/jobs/${byFetch}/cancel`);
      expect((await fetched).status(), origin).toBe(403);
      await Promise.all([
        page.waitForURL(`http://localhost:${port}/v1/jobs/${byForm}/cancel`),
        page.evaluate((url) => {
          const form = Object.assign(document.createElement('form'), { method: 'POST', action: url, enctype: 'text/plain' });
          document.body.append(form);
          form.submit();
        }, `http://localhost:${port}/v1/jobs/${byForm}/cancel`),
      ]);
      expect(JSON.parse((await page.textContent('body')) ?? '').error.code, origin).toBe('CROSS_SITE_REQUEST');
      expect([await status(byFetch), await status(byForm)], origin).toEqual(['queued', 'queued']);
      await page.close();
    }
  });
});
