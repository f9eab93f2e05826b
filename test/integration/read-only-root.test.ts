// A container with a read-only root filesystem and one writable data volume (`docker run --read-only
// -v data:/data`, Kubernetes' readOnlyRootFilesystem, a common hardening): only DATA_DIR may be
// written. Until the fifty-first session every job there trained in full and then failed its export
// (EXPORT_FAILED, "EROFS: read-only file system, mkdtemp '/tmp/qatserve-fusion-...'"), and a SQLite
// statement that spills to a temporary file (a sort bigger than its cache, an index built over a big
// table) failed "disk I/O error". Made with a private mount namespace (root only; CI runs as root).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { canMountExt4, canUnshareMounts, failDisk, linesWith, startServe, submitJob, waitForJob, withReadOnlyRoot } from './serve-process.js';

/** As small a job as trains, verifies and exports: 2 classes of 16 images, one epoch. */
const TINY_JOB = { dataset: { type: 'synthetic', classes: 2, samplesPerClass: 16, valPerClass: 4 }, training: { epochs: 1 } };

describe.skipIf(!canUnshareMounts())('a read-only root filesystem with a writable data directory', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-ro-root-'));
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  // Then that data disk turns read-only under the running service (ext4 mounted errors=remount-ro
  // after a disk error): until the fifty-second session every write answered 500 "internal server
  // error" with a stack in the log, as if it were a bug of ours.
  it.skipIf(!canMountExt4())(
    'lets `qatserve serve` train a job, export it and answer /v1/predict; once its data disk turns read-only, reads and predictions still answer and writes are refused 503 STORAGE_FAILED',
    async () => {
      const srv = await startServe(cwd, 'ro-root', { readOnlyRoot: true, dataDisk: path.join(cwd, 'disk', 'data.img') });
      try {
        // The server's root really is read-only to it.
        const mounts = fs.readFileSync(`/proc/${srv.pid}/mounts`, 'utf8').split('\n');
        expect(mounts.find((m) => m.split(' ')[1] === '/')?.split(' ')[3]).toMatch(/^ro\b/);

        const id = await submitJob(srv.base, TINY_JOB);
        const job = await waitForJob(srv.base, id, 120_000);
        expect(job.status, `${JSON.stringify(job.error)}\n${srv.log()}`).toBe('succeeded');
        const modelFile = path.join(`/proc/${srv.pid}/root`, cwd, 'data', 'artifacts', 'models', job.model!.id, 'model.onnx');
        expect(fs.existsSync(modelFile)).toBe(true);
        const jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 30, g: 90, b: 200 } } })
          .jpeg()
          .toBuffer();
        const predict = () => fetch(`${srv.base}/v1/predict`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(jpeg) });
        const pred = await predict();
        expect(pred.status, await pred.clone().text()).toBe(200);
        expect(((await pred.json()) as { model: { jobId: string } }).model.jobId).toBe(id);

        failDisk(srv.pid, path.join(cwd, 'data'));
        const refused = await fetch(`${srv.base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(TINY_JOB) });
        expect(refused.status, srv.log()).toBe(503);
        expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('STORAGE_FAILED');
        const list = (await (await fetch(`${srv.base}/v1/jobs`)).json()) as { jobs: Array<{ id: string; status: string }> };
        expect(list.jobs.map((j) => [j.id, j.status])).toEqual([[id, 'succeeded']]);
        expect((await predict()).status).toBe(200);
        const log = fs.readFileSync(path.join(cwd, 'serve.log'), 'utf8');
        expect(log).toMatch(/the SQLite database's disk refused a write \(SQLITE_(IOERR|READONLY)\w*: /);
        expect(linesWith(log, 'unhandled error')).toBe(0);
      } finally {
        await srv.stop();
      }
    },
    180_000,
  );

  it('lets SQLite sort more rows than its cache holds, beside the database', () => {
    const data = path.join(cwd, 'sort-data');
    fs.mkdirSync(data, { recursive: true });
    // 200,000 rows of 100 bytes grouped and ordered: a sort of ~20 MB, past SQLite's 2 MB cache.
    const script = `
      const { openDatabase } = await import(${JSON.stringify(path.resolve('dist/db/database.js'))});
      const db = openDatabase(${JSON.stringify(`file:${path.join(data, 'q.db')}`)});
      await db.prisma.$executeRawUnsafe('CREATE TABLE t (v BLOB, s INTEGER)');
      await db.prisma.$executeRawUnsafe('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) INSERT INTO t SELECT randomblob(100), i % 977 FROM n');
      const rows = await db.prisma.$queryRawUnsafe('SELECT s, count(*) AS c, group_concat(v) AS g FROM t GROUP BY s ORDER BY length(g) DESC, s');
      console.log(rows.length);
      await db.close();`;
    const env = { ...process.env };
    delete env.TMPDIR;
    delete env.SQLITE_TMPDIR;
    const argv = withReadOnlyRoot(data, [process.execPath, '--input-type=module', '-e', script]);
    const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env });
    expect(r.stdout.trim(), r.stderr.slice(-1500)).toBe('977');
  }, 60_000);
});
