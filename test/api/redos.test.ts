// Regression for the quadratic base64 check of POST /v1/predict: JSON whitespace then `!` once took
// 2 s for 40 KB and would take hours for the 13 MB a body may hold, with the event loop (and so
// /healthz and every other request) frozen meanwhile. Over real HTTP against `qatserve api`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBase64 } from '../../src/api/routes/predict.js';
import { apiEnv, startApi, type ApiProcess } from './api-process.js';

async function timed(url: string, init?: RequestInit): Promise<{ ms: number; status: number; body: string }> {
  const t0 = performance.now();
  const res = await fetch(url, init);
  const body = await res.text();
  return { ms: performance.now() - t0, status: res.status, body };
}

describe('the base64 check', () => {
  it('accepts base64 in either alphabet with whitespace and padding, and nothing else', () => {
    expect(isBase64('SGVs bG8=\n')).toBe(true);
    expect(isBase64('a-b_c+d/')).toBe(true);
    expect(isBase64('YQ==')).toBe(true);
    expect(isBase64('YQ===')).toBe(false);
    expect(isBase64('YQ==YQ')).toBe(false);
    expect(isBase64('%%%')).toBe(false);
    expect(isBase64('YQ= =\r\n')).toBe(true);
    expect(isBase64('=YQ')).toBe(false);
    expect(isBase64('YQ\u00a0==')).toBe(false); // whitespace is ASCII's only
    expect(isBase64('YQ\u0000')).toBe(false);
    expect(isBase64(`${' '.repeat(1_000_000)}!`)).toBe(false);
  });
});

describe('POST /v1/predict with hostile JSON', () => {
  let api: ApiProcess;
  beforeAll(async () => {
    api = await startApi(apiEnv('redos'));
  });
  afterAll(async () => {
    await api?.stop();
  });

  const post = (body: string) => timed(`${api.base}/v1/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

  it('answers 1 MB bodies of whitespace in under 100 ms, and /healthz stays under 50 ms meanwhile', async () => {
    await post('{"image":"AAAA"}'); // first request warms the route
    const cases = [' '.repeat(1 << 20), `{"image":"${' '.repeat(1 << 20)}!"}`, `{"image":"${'\\n'.repeat(1 << 19)}!"}`];
    // The best of three tries per body: a regression (2 s at 40 KB, quadratic) fails every try,
    // while one slow moment of this shared VM (a /healthz at 57 ms once failed CI) does not.
    for (const body of cases) {
      const tries: { ms: number; healthMs: number }[] = [];
      for (let i = 0; i < 3; i++) {
        const big = post(body);
        const health = await timed(`${api.base}/healthz`);
        const r = await big;
        console.log(`redos: ${body.length} B body -> ${r.status} in ${r.ms.toFixed(1)} ms; /healthz meanwhile ${health.ms.toFixed(1)} ms`);
        expect(r.status).toBe(400);
        expect(JSON.parse(r.body).error.code).toMatch(/^(INVALID_JSON|IMAGE_BASE64_INVALID)$/);
        expect(health.status).toBe(200);
        tries.push({ ms: r.ms, healthMs: health.ms });
      }
      expect(Math.min(...tries.map((t) => t.ms))).toBeLessThan(100);
      expect(Math.min(...tries.map((t) => t.healthMs))).toBeLessThan(50);
    }
  });

  it('answers the largest accepted body (13 MB) of the same shape in well under a second', async () => {
    const r = await post(`{"image":"${' '.repeat(13_000_000)}!"}`);
    console.log(`redos: 13 MB body -> ${r.status} in ${r.ms.toFixed(1)} ms`);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error.code).toBe('IMAGE_BASE64_INVALID');
    expect(r.ms).toBeLessThan(1000);
  });

  it('refuses 13 MB bodies of nested or many values (5.4 s and 1.0 s of JSON.parse) with JSON_TOO_COMPLEX, /healthz answering meanwhile', async () => {
    for (const body of ['['.repeat(6_500_000) + ']'.repeat(6_500_000), `{"image":[${'[],'.repeat(4_000_000)}[]]}`]) {
      const big = post(body);
      const health = await timed(`${api.base}/healthz`);
      const r = await big;
      console.log(`redos: ${body.length} B of structure -> ${r.status} in ${r.ms.toFixed(1)} ms; /healthz meanwhile ${health.ms.toFixed(1)} ms`);
      expect([r.status, JSON.parse(r.body).error.code]).toEqual([400, 'JSON_TOO_COMPLEX']);
      expect(health.status).toBe(200);
      expect(r.ms).toBeLessThan(1000);
    }
  });
});
