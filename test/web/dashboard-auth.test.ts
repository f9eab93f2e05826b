/// <reference lib="dom" />
// The dashboard against a server that needs a key (Debian's chromium via playwright-core): it asks
// for one on the first 401, then lists the jobs with it, and asks again when the key is refused.
import fs from 'node:fs';
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
