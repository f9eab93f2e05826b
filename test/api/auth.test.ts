// API keys over real HTTP against `qatserve api` in its own process: auth off on loopback until a
// key exists, then 401/403 in the error shape on every documented route according to the scope
// openapi.yaml names, revocation, the refusal to listen publicly without a key, and AUTH=off.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOpenApiDocument } from '../../src/api/openapi.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { freePort } from '../integration/serve-process.js';
import { apiEnv, bearer, call, createKey, leaks, runCli, startApi, type ApiProcess } from './api-process.js';
import { tinySynthetic } from './api-harness.js';
import { openSse, type SseStream } from './sse-client.js';

type Op = { security?: Array<Record<string, string[]>> };
type Doc = { paths: Record<string, Record<string, Op>> };

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A GET naming `host` in its Host header (fetch sets Host from the URL). */
function withHost(base: string, url: string, host: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}${url}`, { headers: { ...headers, host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

/** True once the server ended the stream, false if it is still open after `ms`. */
async function endsWithin(stream: SseStream, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const open = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([stream.ended.then(() => true as const), open]);
  } finally {
    clearTimeout(timer);
  }
}

describe('API keys on a loopback server', () => {
  let api: ApiProcess;
  let env: Record<string, string>;
  let db: Database;
  let admin: string;

  beforeAll(async () => {
    // These tests send a few dozen requests a second from one address; the burst limit has its own test.
    env = apiEnv('auth', { RATE_LIMIT_BURST_PER_SECOND: '0' });
    api = await startApi(env);
    db = openDatabase(env.DATABASE_URL);
  });
  afterAll(async () => {
    await api?.stop();
    await db?.close();
  });

  it('needs no key while none exists (loopback), and the job is recorded as auto-serving with no key', async () => {
    const r = await call(api.base, 'POST', '/v1/jobs', {}, tinySynthetic);
    expect(r.status).toBe(201);
    const row = await db.prisma.trainingJob.findUniqueOrThrow({ where: { id: r.json.id } });
    expect(row).toMatchObject({ createdByKeyId: null, autoServe: true });
  });

  it('answers, while it needs no key, only requests for localhost: a page re-pointing its name at 127.0.0.1 is refused', async () => {
    // DNS rebinding: a site the user has open resolves its own name to 127.0.0.1 and calls the
    // port; the browser sends that name in Host. Every route, the dashboard's too.
    const port = new URL(api.base).port;
    for (const url of ['/v1/jobs', '/v1/models', '/', '/readyz']) {
      const refused = await withHost(api.base, url, `rebound.example.com:${port}`);
      expect(refused.status, url).toBe(403);
      expect(JSON.parse(refused.body).error).toMatchObject({ code: 'HOST_NOT_ALLOWED', message: expect.stringContaining('ALLOWED_HOSTS') });
    }
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `app.localhost:${port}`])
      expect((await withHost(api.base, '/v1/jobs', host)).status, host).toBe(200);
    expect(api.log()).toContain('request for another host refused while auth is off on loopback');
  });

  it('turns on once `qatserve keys create` made a key: 401 in the error shape, with WWW-Authenticate; an open event stream ends', async () => {
    // An anonymous stream opened while no key existed: once auth is on, it may not go on.
    const queued = (await call(api.base, 'POST', '/v1/jobs', {}, tinySynthetic)).json;
    const stream = await openSse(`${api.base}/v1/jobs/${queued.id}/events`);
    expect(stream.status).toBe(200);
    await stream.until((es) => es.some((e) => e.type === 'status'));
    const out = await runCli(['keys', 'create', '--name', 'admin', '--scopes', 'admin'], env);
    expect(out.code).toBe(0);
    admin = out.stdout.trim().split('\n').at(-1)!;
    expect(admin).toMatch(/^qsk_[A-Za-z0-9_-]{43}$/);
    expect(out.stdout).toContain('shown this once');
    // Stored as a hash with a public prefix: the key itself is nowhere in the row.
    const row = await db.prisma.apiKey.findUniqueOrThrow({ where: { name: 'admin' } });
    expect(JSON.stringify(row)).not.toContain(admin.slice(12));
    expect(row.keyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(row.prefix).toBe(admin.slice(0, 12));

    const r = await until(
      () => call(api.base, 'GET', '/v1/jobs'),
      (x) => x.status === 401,
      5000,
    );
    expect(r.status).toBe(401);
    expect(r.json.error).toMatchObject({ code: 'AUTH_REQUIRED', issues: [] });
    expect(r.json.error.message).toContain('Authorization: Bearer');
    expect(r.headers.get('www-authenticate')).toBe('Bearer realm="qatserve"');
    expect((await call(api.base, 'GET', '/v1/jobs', bearer(admin))).status).toBe(200);
    // With auth on, keys decide whatever the Host: a rebinding page has no key.
    expect((await withHost(api.base, '/v1/jobs', 'rebound.example.com', bearer(admin))).status).toBe(200);
    expect((await withHost(api.base, '/v1/jobs', 'rebound.example.com')).status).toBe(401);
    expect(await endsWithin(stream, 10_000)).toBe(true);
    const again = await call(api.base, 'GET', `/v1/jobs/${queued.id}/events`);
    expect(again.json.error.code).toBe('AUTH_REQUIRED');
  });

  it('enforces on every documented route the scope openapi.yaml names (401 anonymous, 403 wrong scope)', async () => {
    const made: Record<string, string> = { admin };
    for (const [name, scopes] of [
      ['p', ['predict']],
      ['t', ['train']],
      ['pt', ['predict', 'train']],
    ] as const) {
      const r = await call(api.base, 'POST', '/v1/keys', bearer(admin), { name, scopes });
      expect(r.status).toBe(201);
      expect(r.json.info).toMatchObject({ name, scopes });
      made[name] = r.json.key;
    }
    const holder: Record<string, string> = { predict: made.p, train: made.t, admin };
    const lacking: Record<string, string> = { predict: made.t, train: made.p, admin: made.pt };
    const doc = readOpenApiDocument() as Doc;
    let secured = 0;
    for (const [p, ops] of Object.entries(doc.paths)) {
      const url = p.replace('{id}', 'no-such-id').replace('{name}', 'no-such-key');
      for (const [method, op] of Object.entries(ops)) {
        const m = method.toUpperCase();
        const body = m === 'POST' ? {} : undefined;
        const scope = op.security?.[0]?.bearerAuth?.[0];
        const anon = await call(api.base, m, url, {}, body);
        if (!scope) {
          expect(op.security, `${m} ${p}`).toEqual([]);
          expect(anon.status, `${m} ${p} is open`).not.toBe(401);
          continue;
        }
        secured++;
        expect(anon.status, `${m} ${p} anonymous`).toBe(401);
        expect(anon.json.error.code).toBe('AUTH_REQUIRED');
        const wrong = await call(api.base, m, url, bearer(lacking[scope]), body);
        expect(wrong.status, `${m} ${p} without ${scope}`).toBe(403);
        expect(wrong.json.error.code).toBe('SCOPE_MISSING');
        expect(wrong.json.error.message).toContain(`"${scope}"`);
        const right = await call(api.base, m, url, bearer(holder[scope]), body);
        expect([401, 403], `${m} ${p} with ${scope}: ${right.text}`).not.toContain(right.status);
        const adminCall = await call(api.base, m, url, bearer(admin), body);
        expect([401, 403], `${m} ${p} with admin`).not.toContain(adminCall.status);
      }
    }
    expect(secured).toBeGreaterThanOrEqual(14);
  });

  it('serves POST /predict as the same route as /v1/predict, with the same auth', async () => {
    const p = await call(api.base, 'POST', '/v1/keys', bearer(admin), { name: 'predictor', scopes: ['predict'] });
    for (const url of ['/v1/predict', '/predict']) {
      expect((await call(api.base, 'POST', url, {}, { image: 'AAAA' })).status).toBe(401);
      expect((await call(api.base, 'POST', url, bearer(made(p)), {})).json.error.code).toBe('VALIDATION_FAILED');
      const notImage = await call(api.base, 'POST', `${url}?topK=1`, bearer(made(p)), { image: Buffer.from('not an image').toString('base64') });
      expect(notImage.status).toBe(415);
      expect(notImage.json.error.code).toBe('IMAGE_UNSUPPORTED_FORMAT');
    }
    function made(r: { json: { key: string } }) {
      return r.json.key;
    }
  });

  it('refuses unknown, malformed and revoked keys (revocation over HTTP is immediate; from the CLI within 2 s)', async () => {
    const fake = `qsk_${'A'.repeat(43)}`;
    for (const h of [bearer(fake), bearer('not-a-key'), { authorization: 'Basic YWRtaW46YWRtaW4=' }]) {
      const r = await call(api.base, 'GET', '/v1/jobs', h);
      expect(r.status).toBe(401);
      expect(r.json.error.code).toBe('API_KEY_INVALID');
      expect(r.headers.get('www-authenticate')).toContain('error="invalid_token"');
    }
    const a = (await call(api.base, 'POST', '/v1/keys', bearer(admin), { name: 'temp-a', scopes: ['train'] })).json.key as string;
    const b = (await call(api.base, 'POST', '/v1/keys', bearer(admin), { name: 'temp-b', scopes: ['train'] })).json.key as string;
    expect((await call(api.base, 'GET', '/v1/jobs', bearer(a))).status).toBe(200);
    expect((await call(api.base, 'GET', '/v1/jobs', bearer(b))).status).toBe(200);
    const revoked = await call(api.base, 'POST', '/v1/keys/temp-a/revoke', bearer(admin));
    expect(revoked.status).toBe(200);
    expect(revoked.json.revokedAt).not.toBeNull();
    expect((await call(api.base, 'GET', '/v1/jobs', bearer(a))).status).toBe(401);
    expect((await runCli(['keys', 'revoke', 'temp-b'], env)).code).toBe(0);
    const t0 = Date.now();
    const after = await until(
      () => call(api.base, 'GET', '/v1/jobs', bearer(b)),
      (x) => x.status === 401,
      5000,
    );
    expect(after.status).toBe(401);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("ends a revoked key's open event streams (over HTTP on that replica, from the CLI within a few seconds); other keys' streams go on", async () => {
    const mk = async (name: string) => (await call(api.base, 'POST', '/v1/keys', bearer(admin), { name, scopes: ['train'] })).json.key as string;
    const [leakedHttp, leakedCli, kept] = [await mk('leaked-http'), await mk('leaked-cli'), await mk('kept')];
    // A job nobody trains (no worker here): its streams would run until it ends, days for a long job.
    const job = (await call(api.base, 'POST', '/v1/jobs', bearer(kept), tinySynthetic)).json;
    const follow = async (key: string) => {
      const s = await openSse(`${api.base}/v1/jobs/${job.id}/events`, bearer(key));
      expect(s.status).toBe(200);
      await s.until((es) => es.some((e) => e.type === 'status'));
      return s;
    };
    const [viaHttp, viaCli, keptStream] = [await follow(leakedHttp), await follow(leakedCli), await follow(kept)];
    try {
      expect((await call(api.base, 'POST', '/v1/keys/leaked-http/revoke', bearer(admin))).status).toBe(200);
      expect(await endsWithin(viaHttp, 10_000)).toBe(true);
      expect((await runCli(['keys', 'revoke', 'leaked-cli'], env)).code).toBe(0);
      expect(await endsWithin(viaCli, 10_000)).toBe(true);
      // The reconnect a client makes is refused in words.
      const again = await call(api.base, 'GET', `/v1/jobs/${job.id}/events`, bearer(leakedHttp));
      expect(again.status).toBe(401);
      expect(again.json.error.code).toBe('API_KEY_INVALID');
      // Streams end for the revoked keys only: the third, through the same polls, is still open.
      expect(await endsWithin(keptStream, 3000)).toBe(false);
      expect(api.log()).toContain('job event stream ended: its API key no longer has access');
    } finally {
      for (const s of [viaHttp, viaCli, keptStream]) s.close();
    }
  });

  it("says how many jobs a revoked key leaves going, and cancels them when asked (HTTP and CLI); other keys' jobs stay", async () => {
    const mk = async (name: string) => (await call(api.base, 'POST', '/v1/keys', bearer(admin), { name, scopes: ['train'] })).json.key as string;
    const [spree, spreeCli] = [await mk('spree'), await mk('spree-cli')];
    const post = async (key: string) => (await call(api.base, 'POST', '/v1/jobs', bearer(key), tinySynthetic)).json.id as string;
    const [queued, training, others] = [await post(spree), await post(spree), await post(admin)];
    // One of them is being trained: a worker's claim, made in its row (no worker runs in this file).
    await db.prisma.trainingJob.update({ where: { id: training }, data: { status: 'running' } });
    const status = async (id: string) => (await db.prisma.trainingJob.findUniqueOrThrow({ where: { id } })).status;

    const plain = await call(api.base, 'POST', '/v1/keys/spree/revoke', bearer(admin));
    expect(plain.json).toMatchObject({ name: 'spree', revokedAt: expect.any(String), jobsCancelled: [], jobsGoingOn: 2 });
    const bad = await call(api.base, 'POST', '/v1/keys/spree/revoke', bearer(admin), { cancelJobs: 'yes' });
    expect([bad.status, bad.json.error.issues[0].path]).toEqual([400, 'body.cancelJobs']);
    expect([await status(queued), await status(training)]).toEqual(['queued', 'running']);
    // Revoking again (idempotent) with the body cancels them: the queued one at once, the running one at its next step.
    const again = await call(api.base, 'POST', '/v1/keys/spree/revoke', bearer(admin), { cancelJobs: true });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ revokedAt: plain.json.revokedAt, jobsCancelled: [queued, training], jobsGoingOn: 0 });
    expect([await status(queued), await status(training), await status(others)]).toEqual(['cancelled', 'cancelling', 'queued']);

    // The CLI, with the database only, says the same and does the same.
    const cliJob = await post(spreeCli);
    const told = await runCli(['keys', 'revoke', 'spree-cli'], env);
    expect(told.stdout).toContain('1 job(s) it posted go on (1 queued, 0 running): `qatserve keys revoke spree-cli --cancel-jobs` cancels them');
    expect(await status(cliJob)).toBe('queued');
    const done = await runCli(['keys', 'revoke', 'spree-cli', '--cancel-jobs'], env);
    expect(done.code).toBe(0);
    expect(done.stdout).toContain(`cancelled 1 of its jobs (queued ones at once; running ones stop at their next step, keeping a checkpoint): ${cliJob}`);
    expect(done.stdout).not.toContain('go on');
    expect([await status(cliJob), await status(others)]).toEqual(['cancelled', 'queued']);
  });

  it('lets a train key cancel and resume only its own jobs; an admin key any', async () => {
    const mk = async (name: string) => (await call(api.base, 'POST', '/v1/keys', bearer(admin), { name, scopes: ['train'] })).json.key as string;
    const [x, y] = [await mk('owner-x'), await mk('owner-y')];
    const jx = (await call(api.base, 'POST', '/v1/jobs', bearer(x), tinySynthetic)).json;
    const jy = (await call(api.base, 'POST', '/v1/jobs', bearer(y), tinySynthetic)).json;
    const rowX = await db.prisma.trainingJob.findUniqueOrThrow({ where: { id: jx.id } });
    expect(rowX.autoServe).toBe(false); // a train key's job never serves on its own
    expect(rowX.createdByKeyId).not.toBeNull();
    const denied = await call(api.base, 'POST', `/v1/jobs/${jx.id}/cancel`, bearer(y));
    expect(denied.status).toBe(403);
    expect(denied.json.error.code).toBe('JOB_NOT_OWNED');
    expect((await db.prisma.trainingJob.findUniqueOrThrow({ where: { id: jx.id } })).status).toBe('queued');
    expect((await call(api.base, 'POST', `/v1/jobs/${jx.id}/cancel`, bearer(x))).json.status).toBe('cancelled');
    expect((await call(api.base, 'POST', `/v1/jobs/${jy.id}/cancel`, bearer(admin))).json.status).toBe('cancelled');
    const notTheirs = await call(api.base, 'POST', `/v1/jobs/${jx.id}/resume`, bearer(y));
    expect([notTheirs.status, notTheirs.json.error.code]).toEqual([403, 'JOB_NOT_OWNED']);
    expect((await db.prisma.trainingJob.findUniqueOrThrow({ where: { id: jx.id } })).status).toBe('cancelled');
    expect((await call(api.base, 'POST', `/v1/jobs/${jx.id}/resume`, bearer(x))).json.status).toBe('queued');
    expect((await call(api.base, 'POST', `/v1/jobs/${jy.id}/resume`, bearer(admin))).json.status).toBe('queued');
    const adminJob = (await call(api.base, 'POST', '/v1/jobs', bearer(admin), tinySynthetic)).json;
    expect((await db.prisma.trainingJob.findUniqueOrThrow({ where: { id: adminJob.id } })).autoServe).toBe(true);
  });

  it('lists keys over HTTP and in the CLI without ever showing a key', async () => {
    const list = await call(api.base, 'GET', '/v1/keys', bearer(admin));
    expect(list.status).toBe(200);
    expect(list.json.items.map((k: { name: string }) => k.name)).toContain('admin');
    expect(list.text).not.toContain(admin.slice(12));
    const cli = await runCli(['keys', 'list'], env);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/^NAME\s+PREFIX\s+SCOPES/m);
    expect(cli.stdout).toMatch(/^admin\s+qsk_\S{8}\s+admin\s/m);
    expect(cli.stdout).not.toContain(admin.slice(12));
    // Used keys show when they were last used (written at most once a minute per server).
    const used = (await call(api.base, 'GET', '/v1/keys', bearer(admin))).json.items.find((k: { name: string }) => k.name === 'admin');
    expect(Date.parse(used.lastUsedAt)).toBeGreaterThan(Date.now() - 10 * 60_000);
    const dup = await runCli(['keys', 'create', '--name', 'admin', '--scopes', 'predict'], env);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toContain('"admin" is taken');
    const bad = await runCli(['keys', 'create', '--name', 'x', '--scopes', 'predict,root'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown scope "root"; choose from predict, train, admin');
  });

  it('keeps /healthz, /readyz and /metrics open, and /readyz says only a word per check to anonymous callers', async () => {
    const anon = await call(api.base, 'GET', '/readyz');
    expect(anon.status).toBe(200);
    expect(anon.json).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok', queue: 'ok', model: 'none' } });
    expect((await call(api.base, 'GET', '/healthz')).status).toBe(200);
    expect((await call(api.base, 'GET', '/metrics')).status).toBe(200);
    // The dashboard's files and the API docs load without a key (the page then asks for one).
    for (const url of ['/ui/', '/ui/app.js', '/ui/vendor/uplot/uPlot.iife.min.js', '/docs/', '/docs/json'])
      expect((await call(api.base, 'GET', url)).status, url).toBe(200);
  });
});

describe('listening beyond loopback', () => {
  it('refuses to start with no API key, saying how to create one; starts once one exists, with auth on', async () => {
    const env = apiEnv('public', { HOST: '0.0.0.0', PORT: String(await freePort()) });
    const r = await runCli(['api'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('refuses to listen on 0.0.0.0 with no API key');
    expect(r.stderr).toContain('qatserve keys create --name admin --scopes admin');
    expect(r.stderr).toContain('AUTH=off');
    const key = await createKey(env, 'ops', 'admin');
    const api = await startApi(env);
    try {
      expect((await call(api.base, 'GET', '/v1/jobs')).status).toBe(401);
      expect((await call(api.base, 'GET', '/v1/jobs', bearer(key))).status).toBe(200);
    } finally {
      await api.stop();
    }
  });

  it('starts with AUTH=off and logs a warning at every start', async () => {
    const env = apiEnv('authoff', { HOST: '0.0.0.0', AUTH: 'off' });
    for (let i = 0; i < 2; i++) {
      const api = await startApi(env);
      try {
        expect((await call(api.base, 'GET', '/v1/jobs')).status).toBe(200);
        const warn = api
          .log()
          .split('\n')
          .filter((l) => l.includes('AUTH=off'));
        expect(warn).toHaveLength(1);
        expect(JSON.parse(warn[0]).level).toBe(40); // pino's warn
      } finally {
        await api.stop();
      }
    }
  });

  it('keeps error bodies free of paths and connection strings', async () => {
    // DATA_ROOT given (the datasets mounted here) but absent: its 400 names a path of this machine.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-leaks-'));
    const env = apiEnv('leaks', { DATA_ROOT: path.join(dir, 'datasets') }, dir);
    const api = await startApi(env);
    try {
      const bodies = [
        await call(api.base, 'POST', '/v1/jobs', {}, { dataset: { type: 'imagefolder', path: '/etc/passwd' } }),
        await call(api.base, 'POST', '/v1/jobs', {}, { dataset: { type: 'imagefolder', path: 'missing-folder' } }),
        await call(api.base, 'POST', '/v1/jobs', { 'content-type': 'application/json' }, undefined),
        await call(api.base, 'GET', '/home/user/.ssh/id_rsa'),
        await call(api.base, 'GET', '/v1/models/nope/download'),
      ];
      // A caller's X-Request-Id is kept when it is a plain token, replaced otherwise.
      const kept = await call(api.base, 'GET', '/healthz', { 'x-request-id': 'trace-42.a:b' });
      expect(kept.headers.get('x-request-id')).toBe('trace-42.a:b');
      for (const bad of ['x'.repeat(200), 'a b', '{"$ne":1}', '<script>']) {
        const replaced = await call(api.base, 'GET', '/healthz', { 'x-request-id': bad });
        expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      }
      expect(api.log()).not.toContain('<script>');
      for (const b of bodies) {
        expect(b.status, b.text).toBeGreaterThanOrEqual(400);
        expect(b.json?.error?.code, `${b.status} ${b.text}`).toBeTypeOf('string');
        expect(leaks(b.text), b.text).toEqual([]);
      }
    } finally {
      await api.stop();
    }
  });
});
