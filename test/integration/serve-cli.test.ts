// `qatserve serve` from an empty directory: embedded defaults (SQLite under ./data), API plus one
// worker child, the demo job trained to `succeeded` with a falling loss, a prediction from
// its model, and a clean exit on SIGTERM.
// (The demo, 5 epochs by default: int8 top-1 >= 98.4% on each of 9 data seeds; with 3 epochs 3 of
// the 9 stayed below 90%. Time from the POST: bench/serve-job.ts.)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultTrainThreads } from '../../src/config/settings.js';
import { MetricsPage } from '../../src/jobs/job-view.js';
import sharp from 'sharp';
import { startServe, submitJob, waitForJob } from './serve-process.js';

/** The README's demo job (issue 9's first acceptance job), training at its defaults: it must visibly learn. */
const DEMO_JOB = {
  dataset: { type: 'synthetic', classes: 4, samplesPerClass: 128 },
  model: { widthMultiplier: 0.35, inputSize: 32 },
};

describe('qatserve serve', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-serve-'));
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('starts on its defaults, trains the demo job to succeeded with a falling loss, serves it, restarts a killed worker, and stops on SIGTERM', async () => {
    const srv = await startServe(cwd, 'serve');
    const { base, log } = srv;
    try {
      expect(fs.existsSync(path.join(cwd, 'data', 'qatserve.db'))).toBe(true);
      expect((await fetch(`${base}/docs/json`)).ok).toBe(true);

      const id = await submitJob(base, DEMO_JOB);
      const job = await waitForJob(base, id, 240_000);
      expect(job?.status, `${JSON.stringify(job?.error)}\n${log()}`).toBe('succeeded');
      // TRAIN_THREADS unset: serve's worker leaves a core to /v1/predict.
      expect(fs.readFileSync(path.join(cwd, 'serve.log'), 'utf8')).toContain(`"trainThreads":${defaultTrainThreads('serve')},"msg":"worker waiting for jobs"`);
      // The default fs artifact store, under ./data/artifacts; the worker's scratch space is gone.
      expect(fs.existsSync(path.join(cwd, 'data', 'artifacts', 'models', job.model!.id, 'model.onnx'))).toBe(true);
      // (It is emptied just after the row says succeeded.)
      for (let i = 0; i < 100 && fs.readdirSync(path.join(cwd, 'data', 'work')).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(fs.readdirSync(path.join(cwd, 'data', 'work'))).toEqual([]);

      // It learned: the issue asks for int8 top-1 >= 90% (chance is 25%), with no warning.
      expect(job.model!.int8Top1!).toBeGreaterThanOrEqual(0.9);
      expect(job.warnings).toBe(0);
      // One point per step (5 epochs of 512 images at batch 32), and the loss falls: the last
      // three steps average below the first three.
      const page = MetricsPage.parse(await (await fetch(`${base}/v1/jobs/${id}/metrics`)).json());
      expect(page.points.map((p) => p.step)).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
      const losses = page.points.map((p) => p.loss!);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      expect(mean(losses.slice(-3)), `losses ${losses.join(', ')}`).toBeLessThan(mean(losses.slice(0, 3)));

      // The verified int8 model answers /v1/predict.
      const jpeg = await sharp({ create: { width: 48, height: 48, channels: 3, background: { r: 200, g: 40, b: 40 } } })
        .jpeg()
        .toBuffer();
      const pred = await fetch(`${base}/v1/predict?topK=2`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(jpeg) });
      expect(pred.status).toBe(200);
      const body = (await pred.json()) as { model: { jobId: string }; predictions: Array<{ probability: number }> };
      expect(body.model.jobId).toBe(id);
      expect(body.predictions).toHaveLength(2);
      expect(body.predictions[0].probability).toBeGreaterThanOrEqual(body.predictions[1].probability);

      // The worker dies: /readyz says so until serve has restarted it, and /metrics counts it.
      const workerPid = Number(execFileSync('pgrep', ['-P', String(srv.pid), '-f', 'cli.js worker'], { encoding: 'utf8' }).trim());
      // Large blocks mmapped, so an idle worker gives back what its last job's threads freed.
      expect(fs.readFileSync(`/proc/${workerPid}/environ`, 'utf8').split('\0')).toContain('MALLOC_MMAP_THRESHOLD_=65536');
      process.kill(workerPid, 'SIGKILL');
      const readiness: string[] = [];
      for (let i = 0; i < 300; i++) {
        const r = (await (await fetch(`${base}/readyz`)).json()) as { checks: { worker: string } };
        if (readiness.at(-1) !== r.checks.worker) readiness.push(r.checks.worker);
        if (readiness.length > 1 && r.checks.worker === 'ok') break;
        await new Promise((res) => setTimeout(res, 50));
      }
      expect(readiness[1], log()).toMatch(/^error: crashed \(signal SIGKILL, 1 in a row, 1 restarts\); restarting in [01] s$/);
      expect(readiness.at(-1)).toBe('ok');
      expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/qatserve_worker_restarts_total 1\n[\s\S]*qatserve_worker_restart_backoff_seconds 1\n/);
    } catch (err) {
      await srv.stop();
      throw err;
    }
    expect(await srv.stop()).toBe(0);
  }, 300_000);
});
