// A container with a read-only root filesystem and one writable data volume (`docker run --read-only
// -v data:/data`, Kubernetes' readOnlyRootFilesystem, a common hardening): only DATA_DIR may be
// written. Until the fifty-first session every job there trained in full and then failed its export
// (EXPORT_FAILED, "EROFS: read-only file system, mkdtemp '/tmp/qatserve-fusion-...'"). Made with a private mount namespace (root only; CI runs as root).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { canUnshareMounts, startServe, submitJob, waitForJob } from './serve-process.js';

/** As small a job as trains, verifies and exports: 2 classes of 16 images, one epoch. */
const TINY_JOB = { dataset: { type: 'synthetic', classes: 2, samplesPerClass: 16, valPerClass: 4 }, training: { epochs: 1 } };

describe.skipIf(!canUnshareMounts())('a read-only root filesystem with a writable data directory', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-ro-root-'));
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('lets `qatserve serve` train a job, export it and answer /v1/predict from it', async () => {
    const srv = await startServe(cwd, 'ro-root', { readOnlyRoot: true });
    try {
      // The server's root really is read-only to it.
      const mounts = fs.readFileSync(`/proc/${srv.pid}/mounts`, 'utf8').split('\n');
      expect(mounts.find((m) => m.split(' ')[1] === '/')?.split(' ')[3]).toMatch(/^ro\b/);

      const id = await submitJob(srv.base, TINY_JOB);
      const job = await waitForJob(srv.base, id, 120_000);
      expect(job.status, `${JSON.stringify(job.error)}\n${srv.log()}`).toBe('succeeded');
      expect(fs.existsSync(path.join(cwd, 'data', 'artifacts', 'models', job.model!.id, 'model.onnx'))).toBe(true);

      const jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 30, g: 90, b: 200 } } })
        .jpeg()
        .toBuffer();
      const pred = await fetch(`${srv.base}/v1/predict`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(jpeg) });
      expect(pred.status, await pred.clone().text()).toBe(200);
      expect(((await pred.json()) as { model: { jobId: string } }).model.jobId).toBe(id);
    } finally {
      await srv.stop();
    }
  }, 180_000);
});
