// PostgreSQL that takes no writes: DATABASE_URL reaches a standby (a failover demoted its server,
// a replica's "reader" endpoint), or default_transaction_read_only is set for maintenance. Reads
// answer; a change is refused as the database's state, not as a fault of the service (it was a
// 500 "internal server error").
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.js';
import { openApiDeps } from '../../src/api/api-deps.js';
import { JobView } from '../../src/jobs/job-view.js';
import { adminQuery } from '../db/test-databases.js';
import { startHarness, tinySynthetic, type Harness } from './api-harness.js';

/** A login role whose every session is read-only, as on a standby. */
const role = `qs_ro_${process.pid}`;

describe('a read-only PostgreSQL', () => {
  let h: Harness;
  let readOnly: Awaited<ReturnType<typeof buildApp>>;
  let closeDeps: () => Promise<void>;
  beforeAll(async () => {
    h = await startHarness('postgres');
    await adminQuery(`CREATE ROLE ${role} LOGIN SUPERUSER`);
    await adminQuery(`ALTER ROLE ${role} SET default_transaction_read_only = on`);
    const url = new URL(h.settings.databaseUrl);
    url.username = role;
    const deps = openApiDeps({ ...h.settings, databaseUrl: url.toString() }, false);
    closeDeps = () => deps.close();
    readOnly = await buildApp(deps);
  });
  afterAll(async () => {
    await readOnly?.close();
    await closeDeps?.();
    await h?.close();
    await adminQuery(`DROP ROLE IF EXISTS ${role}`);
  });

  it('answers reads, and refuses a change with 503 DATABASE_UNAVAILABLE saying it is read-only, changing nothing', async () => {
    const made = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinySynthetic });
    expect(made.statusCode).toBe(201);
    const id = JobView.parse(made.json()).id;

    const list = await readOnly.inject({ method: 'GET', url: '/v1/jobs' });
    expect(list.statusCode).toBe(200);
    expect(list.json<{ jobs: JobView[] }>().jobs.map((j) => j.id)).toEqual([id]);

    for (const [method, url, payload] of [
      ['POST', '/v1/jobs', tinySynthetic],
      ['POST', `/v1/jobs/${id}/cancel`, undefined],
    ] as const) {
      const res = await readOnly.inject({ method, url, payload });
      expect([res.statusCode, res.headers['retry-after']], `${method} ${url}: ${res.body}`).toEqual([503, '5']);
      expect(res.json()).toMatchObject({
        error: { code: 'DATABASE_UNAVAILABLE', message: 'the database takes no writes right now (it is read-only): this change was not made; retry in 5 s' },
      });
    }
    const after = (await h.app.inject({ method: 'GET', url: '/v1/jobs' })).json<{ jobs: JobView[] }>().jobs;
    expect(after.map((j) => [j.id, j.status])).toEqual([[id, 'queued']]);
  });
});
