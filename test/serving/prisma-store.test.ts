// The Prisma-backed store inside the real app (buildApp wires the serving routes itself): a Model
// row (its files in the harness's fs artifact store) written the way the worker writes it becomes the served model; promotion pins another.
// Runs on SQLite and on PostgreSQL (127.0.0.1:5432, database `test`).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type DbKind, type Harness } from '../api/api-harness.js';
import { modelFilesIn, PrismaModelStore } from '../../src/serving/model-store.js';
import { insertModelRow, makeImage, writeFixtureModel, type FixtureModel } from './fixtures.js';

async function addModelRow(h: Harness, m: FixtureModel): Promise<void> {
  const prisma = h.deps.db.prisma;
  await prisma.trainingJob.create({ data: { id: m.record.jobId, name: 'fixture', status: 'SUCCEEDED', config: '{}' } });
  await insertModelRow(prisma, m, m.record.jobId, m.record.createdAt);
}

for (const kind of ['sqlite', 'postgres'] as DbKind[]) {
  describe(`serving from the Model table (${kind})`, () => {
    let h: Harness;
    beforeAll(async () => {
      // Model files are written straight into an fs store's directory, on either database.
      h = await startHarness(kind, { MODEL_POLL_MS: '0', PREDICT_WORKERS: '1', ARTIFACT_STORE: 'fs' });
    });
    afterAll(async () => {
      await h?.close();
    });

    it('serves the newest model row, then a promoted one, through buildApp', async () => {
      const png = await makeImage('png', 40, 40);
      const predict = () => h.app.inject({ method: 'POST', url: '/v1/predict?topK=3', payload: png, headers: { 'content-type': 'image/png' } });
      const none = await predict();
      expect(none.statusCode).toBe(503);
      expect(none.json().error.code).toBe('NO_MODEL');

      const a = await writeFixtureModel(h.settings.artifactsDir, `a-${kind}`, { seed: 1, createdAt: new Date('2026-01-01') });
      const b = await writeFixtureModel(h.settings.artifactsDir, `b-${kind}`, { seed: 2, createdAt: new Date('2026-01-02') });
      await addModelRow(h, a);
      await addModelRow(h, b);
      const store = new PrismaModelStore(h.deps.db.prisma, modelFilesIn(h.settings.artifactsDir));
      expect((await store.list({ take: 10 })).map((m) => m.id)).toEqual([b.record.id, a.record.id]);
      expect((await store.get(a.record.id))!.classes).toEqual(a.record.classes);

      const first = await predict();
      expect(first.statusCode).toBe(200);
      expect(first.json().model).toEqual({ id: b.record.id, jobId: b.record.jobId });
      expect(first.json().predictions).toHaveLength(3);

      const promoted = await h.app.inject({ method: 'POST', url: `/v1/models/${a.record.id}/promote` });
      expect(promoted.statusCode).toBe(200);
      expect((await store.serving())!.id).toBe(a.record.id);
      expect((await predict()).json().model.id).toBe(a.record.id);
      const list = (await h.app.inject({ method: 'GET', url: '/v1/models' })).json();
      expect(list.servingId).toBe(a.record.id);
      expect(list.items.find((m: { id: string }) => m.id === a.record.id).promotedAt).not.toBeNull();
    });

    it('lists models a page at a time, newest first, the serving one named on every page', async () => {
      // Two more, one created at the same instant as the newest so the id breaks the tie.
      const c = await writeFixtureModel(h.settings.artifactsDir, `c-${kind}`, { seed: 3, createdAt: new Date('2026-01-03') });
      const d = await writeFixtureModel(h.settings.artifactsDir, `d-${kind}`, { seed: 4, createdAt: new Date('2026-01-03') });
      await addModelRow(h, c);
      await addModelRow(h, d);
      const pages: string[][] = [];
      let cursor: string | null = null;
      do {
        const url: string = `/v1/models?limit=1${cursor ? `&cursor=${cursor}` : ''}`;
        const res = await h.app.inject({ method: 'GET', url });
        expect(res.statusCode).toBe(200);
        const body = res.json<{ items: { id: string }[]; nextCursor: string | null; servingId: string | null }>();
        expect(body.servingId).not.toBeNull();
        pages.push(body.items.map((m) => m.id));
        cursor = body.nextCursor;
      } while (cursor);
      expect(pages).toEqual([[d.record.id], [c.record.id], [`b-${kind}`], [`a-${kind}`]]);
      const all = (await h.app.inject({ method: 'GET', url: '/v1/models' })).json();
      expect(all.items.map((m: { id: string }) => m.id)).toEqual(pages.flat());
      expect(all.nextCursor).toBeNull();
      for (const bad of ['limit=0', 'limit=101', 'cursor=garbage', 'status=x']) {
        const res = await h.app.inject({ method: 'GET', url: `/v1/models?${bad}` });
        expect(res.statusCode, bad).toBe(400);
      }
    });
  });
}
