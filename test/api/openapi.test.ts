// openapi.yaml is generated from the zod schemas and must stay true to the routes: the committed
// file equals the generator's output, every route is documented (and every documented path is
// served), and real requests and responses validate against the document.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_PATH, readOpenApiDocument, renderOpenApiYaml } from '../../src/api/openapi.js';
import { packageVersion } from '../../src/api/version.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from './api-harness.js';

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>> };

describe('openapi.yaml', () => {
  let h: Harness;
  let doc: Doc;
  let ajv: Ajv2020;
  beforeAll(async () => {
    // Load shedding off: this process compiles the document's schemas with ajv between requests,
    // seconds of event loop on a loaded CI machine, and the statuses asserted below are the
    // routes' own (a shed GET /v1/jobs answered 503 once, in CI).
    h = await startHarness('sqlite', { MAX_EVENT_LOOP_DELAY_MS: '0' });
    await waitReady(h);
    doc = readOpenApiDocument() as Doc;
    ajv = new Ajv2020({ strict: false, allErrors: true });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    ajv.addSchema(doc, 'openapi');
  });
  afterAll(async () => h?.close());

  it('is the generator output (run `npm run openapi` after changing a schema)', async () => {
    expect(fs.readFileSync(OPENAPI_PATH, 'utf8')).toBe(await renderOpenApiYaml(packageVersion()));
  });

  it('passes `redocly lint` with its recommended rules: 0 errors (bearer scheme per route, a server entry)', () => {
    let out: string;
    try {
      out = execFileSync('node_modules/.bin/redocly', ['lint', OPENAPI_PATH, '--format=json'], {
        encoding: 'utf8',
        env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err) {
      out = (err as { stdout: string }).stdout; // exit 1 when there are errors: show them
    }
    const report = JSON.parse(out) as { totals: { errors: number }; problems: Array<{ ruleId: string; severity: string; message: string }> };
    expect(report.problems.filter((p) => p.severity === 'error')).toEqual([]);
    expect(report.totals.errors).toBe(0);
    const doc = readOpenApiDocument() as { servers?: unknown[]; components: { securitySchemes: Record<string, unknown> } };
    expect(doc.servers?.length).toBeGreaterThan(0);
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('documents every route the app serves, and serves every documented one', () => {
    const served = new Set(h.app.routeList.filter((r) => !r.startsWith('HEAD ')).map((r) => r.replace(/:(\w+)/g, '{$1}')));
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
    expect([...served].sort()).toEqual([...documented].sort());
  });

  const validate = (method: string, path: string, status: number, body: unknown) => {
    const op = doc.paths[path][method.toLowerCase()];
    const response = op.responses[String(status)];
    expect(response, `${method} ${path} ${status} is not documented`).toBeDefined();
    const content = response.content?.['application/json'];
    expect(content, `${method} ${path} ${status} has no JSON schema`).toBeDefined();
    const schema = content!.schema as { $ref?: string; oneOf?: { $ref: string }[] };
    const checks = (schema.oneOf ?? [schema as { $ref: string }]).map((s) => ajv.getSchema(`openapi${s.$ref}`)!);
    const ok = checks.some((check) => check(body) === true);
    expect(ok, `${method} ${path} ${status}: ${checks.map((c) => ajv.errorsText(c.errors)).join(' | ')}`).toBe(true);
  };

  it('lists the load shedder 503 OVERLOADED (an error body) on every operation but /healthz', () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const shed = op.responses['503'] as { description: string } | undefined;
        if (path === '/healthz') expect(shed, path).toBeUndefined();
        else expect(shed?.description, `${method} ${path}`).toMatch(/OVERLOADED, with Retry-After/);
      }
    }
    validate('GET', '/readyz', 503, { error: { code: 'OVERLOADED', message: 'overloaded', issues: [] } });
    validate('POST', '/v1/predict', 503, { error: { code: 'OVERLOADED', message: 'overloaded', issues: [] } });
  });

  it('requests and responses validate against it', async () => {
    const inputSchema = ajv.getSchema('openapi#/components/schemas/TrainingConfigInput')!;
    expect(inputSchema(tinySynthetic)).toBe(true);
    expect(inputSchema({ dataset: { type: 'synthetic' }, training: { batchSize: 0 } })).toBe(false);
    expect(inputSchema({ dataset: { type: 'synthetic' }, extra: 1 })).toBe(false);

    const calls: Array<[string, string, string, unknown?]> = [];
    const created = await h.app.inject({ method: 'POST', url: '/v1/jobs', payload: tinySynthetic });
    const id = created.json().id as string;
    await h.deps.db.prisma.metricPoint.create({ data: { jobId: id, step: 1, epoch: 1, loss: 1.5, learningRate: 0.05 } });
    validate('POST', '/v1/jobs', created.statusCode, created.json());
    calls.push(
      ['POST', '/v1/jobs', '/v1/jobs', { dataset: { type: 'nope' } }],
      ['GET', '/v1/jobs', '/v1/jobs?limit=1'],
      ['GET', '/v1/jobs', '/v1/jobs?limit=-1'],
      ['GET', '/v1/jobs/{id}', `/v1/jobs/${id}`],
      ['GET', '/v1/jobs/{id}', '/v1/jobs/missing'],
      ['GET', '/v1/jobs/{id}/metrics', `/v1/jobs/${id}/metrics`],
      ['GET', '/v1/jobs/{id}/metrics', `/v1/jobs/${id}/metrics?after=x`],
      ['POST', '/v1/jobs/{id}/cancel', `/v1/jobs/${id}/cancel`],
      ['POST', '/v1/jobs/{id}/cancel', `/v1/jobs/${id}/cancel`], // now 409
      ['GET', '/healthz', '/healthz'],
      ['GET', '/readyz', '/readyz'],
    );
    const statuses: number[] = [];
    for (const [method, path, url, payload] of calls) {
      const res = await h.app.inject({ method: method as 'GET', url, ...(payload ? { payload: payload } : {}) });
      statuses.push(res.statusCode);
      expect(res.statusCode === 503 ? res.body : '', `${method} ${url}`).not.toMatch(/./);
      validate(method, path, res.statusCode, res.json());
    }
    expect(statuses).toEqual([400, 200, 400, 200, 404, 200, 400, 200, 409, 200, 200]);
    const docs = await h.app.inject({ method: 'GET', url: '/docs/json' });
    expect(docs.json().paths['/v1/jobs'].post.operationId).toBe('createJob');
    expect((await h.app.inject({ method: 'GET', url: '/docs' })).statusCode).toBeLessThan(400);
  });
});
