/// <reference lib="dom" />
// The dashboard against a server that needs a key (Debian's chromium via playwright-core): it asks
// for one on the first 401, then lists the jobs with it, and asks again when the key is refused;
// an admin manages keys in it. And a server with no key yet (auth off on loopback): its own
// dashboard changes jobs, another site's page in the same browser cannot.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { KeyStore } from '../../src/auth/key-store.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from '../api/api-harness.js';
import { launchChromium } from './browser.js';

/** A job posted with `key` (none: anonymous), as a client posts one. */
const postJob = (h: Harness, name: string, key?: string) =>
  h.app.inject({ method: 'POST', url: '/v1/jobs', payload: { ...tinySynthetic, name }, headers: key ? { authorization: `Bearer ${key}` } : {} });

describe('dashboard with API keys', () => {
  let h: Harness;
  let browser: Browser;
  let base: string;
  let key: string;

  beforeAll(async () => {
    h = await startHarness('sqlite');
    await waitReady(h);
    key = (await new KeyStore(h.deps.db.prisma).create('browser', 'train')).key;
    h.app.auth.forget(); // as `qatserve keys create` would be seen within 2 s
    expect((await postJob(h, 'keyed-job', key)).statusCode).toBe(201);
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it('asks for a key on 401, then shows the jobs with it; a refused key is asked for again', async () => {
    const page = await browser.newPage();
    const modelLists: string[] = [];
    page.on('request', (r) => void (new URL(r.url()).pathname === '/v1/models' && modelLists.push(r.url())));
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
    // Without the predict scope the models list is refused once, not at every poll (every 3 s).
    await expect.poll(() => page.textContent('#models-error'), { timeout: 10_000 }).toBe('Listing models needs a key with the predict scope.');
    const asked = modelLists.length;
    await new Promise((r) => setTimeout(r, 7000));
    expect(modelLists.length).toBe(asked);

    await new KeyStore(h.deps.db.prisma).revoke('browser');
    h.app.auth.forget();
    await expect.poll(() => form.isVisible(), { timeout: 10_000 }).toBe(true);
    expect(await page.locator('#api-key-error').textContent()).toContain('The key was refused');
    // A train key's page offers no key management: the listing needs admin.
    expect(await page.locator('#keys-panel').isVisible()).toBe(false);
    await page.close();
  });

  it('lets an admin create a key (shown once) and revoke it, then cancel the jobs it left going', async () => {
    const admin = (await new KeyStore(h.deps.db.prisma).create('dash-keys-admin', 'admin')).key;
    h.app.auth.forget();
    const context = await browser.newContext({ permissions: ['clipboard-read', 'clipboard-write'] });
    const page = await context.newPage();
    await page.addInitScript((k) => sessionStorage.setItem('qatserve.apiKey', k), admin);
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${base}/`);
    await expect.poll(() => page.locator('#keys-panel').isVisible(), { timeout: 10_000 }).toBe(true);
    await expect.poll(() => page.locator('#keys tbody tr[data-key-name="dash-keys-admin"]').count(), { timeout: 10_000 }).toBe(1);

    await page.fill('#key-name', 'ci-bot');
    await page.check('#key-train');
    await page.click('#key-form button[type=submit]');
    await expect.poll(() => page.locator('#key-created').isVisible(), { timeout: 10_000 }).toBe(true);
    const created = (await page.textContent('#key-created-value'))!;
    expect(created).toMatch(/^qsk_[A-Za-z0-9_-]{43}$/);
    expect(await page.textContent('#key-created-note')).toContain('Key "ci-bot" (train): shown this once');
    await page.click('#key-copy');
    await expect.poll(() => page.textContent('#key-copy')).toBe('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(created);
    // Where there is no clipboard (a plain-HTTP page reached by another name than localhost), the key is selected for Ctrl+C.
    await page.evaluate(() => Object.defineProperty(navigator, 'clipboard', { value: undefined }));
    await page.click('#key-copy');
    await expect.poll(() => page.textContent('#key-copy')).toBe('Selected: press Ctrl+C');
    expect(await page.evaluate(() => getSelection()?.toString())).toBe(created);
    const row = page.locator('#keys tbody tr[data-key-name="ci-bot"]');
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    expect(await row.textContent()).toContain(created.slice(0, 12));
    // The key works, and a job posted with it is its own.
    const posted = await postJob(h, 'bot-job', created);
    expect(posted.statusCode).toBe(201);
    const jobId = posted.json().id as string;

    await row.getByRole('button', { name: 'revoke key ci-bot' }).click();
    await expect.poll(() => page.textContent('#keys-note'), { timeout: 10_000 }).toBe('Key "ci-bot" revoked. 1 job it posted goes on (queued or running).');
    expect((await h.app.inject({ method: 'GET', url: '/v1/jobs', headers: { authorization: `Bearer ${created}` } })).statusCode).toBe(401);
    await expect.poll(() => row.getByRole('button').count(), { timeout: 10_000 }).toBe(0);
    const status = async () => (await h.app.inject({ method: 'GET', url: `/v1/jobs/${jobId}`, headers: { authorization: `Bearer ${admin}` } })).json().status;
    expect(await status()).toBe('queued');
    await page.click('#cancel-key-jobs');
    await expect.poll(() => page.textContent('#keys-note'), { timeout: 10_000 }).toContain('revoked; cancelled 1 job it posted');
    expect(await status()).toBe('cancelled');
    expect(await page.isVisible('#cancel-key-jobs')).toBe(false);
    await context.close();
  });
});

describe('dashboard with no key yet (auth off on loopback)', () => {
  let h: Harness;
  let browser: Browser;
  let port: number;
  let site: http.Server;

  const queued = async (name: string) => {
    const r = await postJob(h, name);
    expect(r.statusCode).toBe(201);
    return r.json().id as string;
  };
  const status = async (id: string) => (await h.app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json().status as string;

  beforeAll(async () => {
    h = await startHarness('sqlite');
    await waitReady(h);
    port = Number(new URL(await h.app.listen({ port: 0, host: '127.0.0.1' })).port);
    // Any other site: an empty page the browser opens, whose scripts then try the API.
    site = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>another site</title>'));
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    browser = await launchChromium();
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
  it('creates the first key from the dashboard: auth turns on, and the tab goes on with that key', async () => {
    // Last in this block: from here on the server needs a key.
    await queued('before-the-key');
    const page = await browser.newPage();
    await page.goto(`http://localhost:${port}/`);
    await expect.poll(() => page.locator('#keys-panel').isVisible(), { timeout: 10_000 }).toBe(true);
    await page.fill('#key-name', 'first-admin');
    await page.check('#key-admin');
    const posts: string[] = [];
    page.on('request', (r) => void (r.method() === 'POST' && r.url().endsWith('/v1/keys') && posts.push(r.url())));
    // Double-clicked: the key is asked for once (the second request used to fail, or be refused
    // 401 once auth was on and ask the user for a key).
    await page.dblclick('#key-form button[type=submit]');
    await expect.poll(() => page.textContent('#key-created-note'), { timeout: 10_000 }).toContain('This tab uses it from now on.');
    expect(posts).toHaveLength(1);
    expect(await page.textContent('#keys-error')).toBe('');
    h.app.auth.forget(); // as every replica does within 2 s
    expect((await h.app.inject({ method: 'GET', url: '/v1/jobs' })).statusCode).toBe(401);
    // Polls go on with the key: the jobs stay listed and the page never asks for one.
    const requests: number[] = [];
    page.on('response', (r) => void (r.url().endsWith('/v1/jobs?limit=20') && requests.push(r.status())));
    await expect.poll(() => requests.length, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(requests.every((s) => s === 200)).toBe(true);
    expect(await page.locator('#jobs tbody').textContent()).toContain('before-the-key');
    expect(await page.isVisible('#api-key-form')).toBe(false);
    await page.close();
  });
});
