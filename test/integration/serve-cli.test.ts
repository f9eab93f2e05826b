// `qatserve serve` from an empty directory: embedded defaults (SQLite under ./data), API plus one
// worker child, the demo job trained to `succeeded` with a falling loss, a prediction from
// its model, and a clean exit on SIGTERM.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JobView, MetricsPage } from '../../src/jobs/job-view.js';
import sharp from 'sharp';
import { assertBuilt, CLI, FAST_QUEUE_ENV } from './worker-process.js';

/** The acceptance job of the service issue, verbatim. */
const DEMO_JOB = {
  dataset: { type: 'synthetic', classes: 4, samplesPerClass: 32 },
  model: { widthMultiplier: 0.35, inputSize: 32 },
  training: { epochs: 1, batchSize: 16 },
};

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe('qatserve serve', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-serve-'));
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('starts on its defaults, trains the demo job to succeeded with a falling loss, serves it, and stops on SIGTERM', async () => {
    assertBuilt();
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, ...FAST_QUEUE_ENV, PORT: String(port), HOST: '127.0.0.1', QUEUE_PREFIX: `qs-serve-${process.pid}` };
    for (const k of ['DATABASE_URL', 'DATA_DIR', 'ARTIFACTS_DIR', 'DATA_ROOT']) delete env[k];
    const logFile = path.join(cwd, 'serve.log');
    const fd = fs.openSync(logFile, 'w');
    const proc = spawn(process.execPath, [CLI, 'serve'], { cwd, env, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    const base = `http://127.0.0.1:${port}`;
    const log = () => fs.readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n');
    try {
      let ready = false;
      for (let i = 0; i < 100 && !ready; i++) {
        ready = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
        if (!ready) await new Promise((r) => setTimeout(r, 200));
      }
      expect(ready, log()).toBe(true);
      expect(fs.existsSync(path.join(cwd, 'data', 'qatserve.db'))).toBe(true);
      expect((await fetch(`${base}/docs/json`)).ok).toBe(true);

      const res = await fetch(`${base}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(DEMO_JOB),
      });
      expect(res.status).toBe(201);
      const { id } = JobView.parse(await res.json());
      let job: JobView | null = null;
      const until = Date.now() + 120_000;
      while (Date.now() < until) {
        job = JobView.parse(await (await fetch(`${base}/v1/jobs/${id}`)).json());
        if (['succeeded', 'failed', 'cancelled'].includes(job.status)) break;
        await new Promise((r) => setTimeout(r, 300));
      }
      expect(job?.status, `${JSON.stringify(job?.error)}\n${log()}`).toBe('succeeded');
      expect(fs.existsSync(path.join(cwd, 'data', 'artifacts', 'models', id))).toBe(true);

      // One point per step, and the loss falls: the last three steps average below the first three.
      const page = MetricsPage.parse(await (await fetch(`${base}/v1/jobs/${id}/metrics`)).json());
      expect(page.points.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      const losses = page.points.map((p) => p.loss!);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      expect(mean(losses.slice(-3)), `losses ${losses.join(', ')}`).toBeLessThan(mean(losses.slice(0, 3)));

      // The verified int8 model answers /v1/predict.
      const jpeg = await sharp({ create: { width: 48, height: 48, channels: 3, background: { r: 200, g: 40, b: 40 } } }).jpeg().toBuffer();
      const pred = await fetch(`${base}/v1/predict?topK=2`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(jpeg) });
      expect(pred.status).toBe(200);
      const body = (await pred.json()) as { model: { jobId: string }; predictions: Array<{ probability: number }> };
      expect(body.model.jobId).toBe(id);
      expect(body.predictions).toHaveLength(2);
      expect(body.predictions[0]!.probability).toBeGreaterThanOrEqual(body.predictions[1]!.probability);
    } finally {
      proc.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
