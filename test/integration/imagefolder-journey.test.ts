// The seed's journey on an image folder, small enough for CI: `qatserve serve` from an empty
// directory; a float job on train/ and val/ folders of JPEGs of mixed sizes at 224 px; a QAT job
// initialised from it (init.fromJob) at a tenth of the learning rate; its int8 model exported,
// answering /v1/predict; and `qatserve eval` on the val/ folder agreeing with the manifest.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { peakLearningRate } from '../../src/config/training-config.js';
import { ModelManifest } from '../../src/export/manifest.js';
import type { EvalReport } from '../../src/commands/eval-command.js';
import { startServe, submitJob, waitForJob } from './serve-process.js';
import { CLI } from './worker-process.js';

const run = promisify(execFile);

/** Sizes that are neither square nor the model's: every image is resized and centre-cropped. */
const SIZES: Array<[number, number]> = [
  [320, 240],
  [200, 300],
  [256, 256],
  [413, 287],
  [150, 150],
  [640, 360],
];
const CLASSES = { warm: { r: 210, g: 90, b: 40 }, cool: { r: 40, g: 90, b: 210 } } as const;

/** A JPEG of the class colour with diagonal stripes and noise: easy to learn, not a flat colour. */
async function classJpeg(base: { r: number; g: number; b: number }, [w, h]: [number, number], seed: number): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  let s = (seed * 2654435761) >>> 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      const stripe = ((x + y + seed * 7) >> 4) % 2 ? 30 : -30;
      const noise = (s >>> 24) / 8 - 16;
      const o = (y * w + x) * 3;
      px[o] = Math.max(0, Math.min(255, base.r + stripe + noise));
      px[o + 1] = Math.max(0, Math.min(255, base.g + stripe + noise));
      px[o + 2] = Math.max(0, Math.min(255, base.b + stripe + noise));
    }
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

async function writeFolder(root: string, perClass: { train: number; val: number }): Promise<void> {
  let n = 0;
  for (const [split, count] of Object.entries(perClass)) {
    for (const [name, colour] of Object.entries(CLASSES)) {
      const dir = path.join(root, split, name);
      fs.mkdirSync(dir, { recursive: true });
      for (let i = 0; i < count; i++, n++) fs.writeFileSync(path.join(dir, `${i}.jpg`), await classJpeg(colour, SIZES[n % SIZES.length], n));
    }
  }
}

describe('image folder journey at 224 px', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-journey-'));
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('float job, QAT fine-tune from it at a tenth of the rate, export, /v1/predict, and qatserve eval equal to the manifest', async () => {
    // The default DATA_ROOT of `qatserve serve`: ./data/datasets.
    const pets = path.join(cwd, 'data', 'datasets', 'pets');
    await writeFolder(pets, { train: 8, val: 5 });
    // Phone photos it cannot read: the job says so, once, in words (GET .../warnings).
    for (const f of ['IMG_1.HEIC', 'IMG_2.heic']) fs.writeFileSync(path.join(pets, 'train', 'warm', f), 'not decodable here');
    const srv = await startServe(cwd, 'journey');
    const { base, log } = srv;
    try {
      const model = { widthMultiplier: 0.35, inputSize: 224 };
      const dataset = { type: 'imagefolder', path: 'pets' };
      const training = { epochs: 1, batchSize: 4, maxSteps: 3 };
      const floatId = await submitJob(base, { name: 'float', dataset, model, training, quantization: { enabled: false } });
      const floatJob = await waitForJob(base, floatId, 180_000);
      expect(floatJob.status, `${JSON.stringify(floatJob.error)}\n${log()}`).toBe('succeeded');
      expect(floatJob.config.model.inputSize).toBe(224);
      // What the worker made of the folder, on the job itself (not only in the worker's log).
      expect(floatJob.dataset).toEqual({
        description: 'imagefolder pets: 2 classes, 16 train / 10 val (val/)',
        classes: 2,
        classNames: ['cool', 'warm'],
        trainImages: 16,
        valImages: 10,
      });
      const said = (await (await fetch(`${base}/v1/jobs/${floatId}/warnings`)).json()) as { warnings: { code: string; message: string }[]; total: number };
      expect(said.total).toBe(floatJob.warnings);
      expect(said.warnings).toHaveLength(said.total);
      expect(said.warnings.filter((w) => w.code === 'FORMAT_UNREAD').map((w) => w.message)).toEqual([
        'skipped 2 image files in other formats (.heic 2): only JPEG, PNG, WebP, GIF, TIFF and AVIF are read; convert them to train on them',
      ]);

      const lr = peakLearningRate({ batchSize: 4, learningRate: null }) / 10;
      const qatId = await submitJob(base, {
        name: 'qat',
        dataset,
        model,
        init: { fromJob: floatId },
        training: { ...training, learningRate: lr },
        quantization: { delaySteps: 0 },
      });
      const qat = await waitForJob(base, qatId, 180_000);
      expect(qat.status, `${JSON.stringify(qat.error)}\n${log()}`).toBe('succeeded');
      expect(qat.config.training.learningRate).toBeCloseTo(0.000625, 10); // 0.4 x 4 / 256 / 10;
      const qatModel = qat.model!;
      expect(qatModel.inputSize).toBe(224);
      expect(qatModel.classes).toEqual(['cool', 'warm']);

      // Its manifest: the int8 file on every validation image (5 per class).
      const modelDir = path.join(cwd, 'data', 'artifacts', 'models', qatModel.id);
      const manifest = ModelManifest.parse(JSON.parse(fs.readFileSync(path.join(modelDir, 'manifest.json'), 'utf8')));
      expect(manifest.evaluation!.images).toBe(10);
      expect(manifest.evaluation!.top1).toBeCloseTo(manifest.accuracy.int8Top1, 10);
      expect(manifest.accuracy.int8Top1).toBeCloseTo(qatModel.int8Top1!, 10);

      // The newest model serves /v1/predict (once the API's registry has polled for it: MODEL_POLL_MS).
      const jpeg = await classJpeg(CLASSES.warm, [500, 333], 99);
      let served = '';
      for (let i = 0; i < 50 && served !== qatModel.id; i++) {
        const pred = await fetch(`${base}/v1/predict`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(jpeg) });
        const predBody = await pred.text();
        expect(pred.status, predBody).toBe(200);
        served = (JSON.parse(predBody) as { model: { id: string } }).model.id;
        if (served !== qatModel.id) await new Promise((r) => setTimeout(r, 200));
      }
      expect(served).toBe(qatModel.id);

      // qatserve eval, by model id (database + artifact store) and by file: the manifest's figures.
      // serve's defaults, as the test server ran with: ./data/qatserve.db and ./data/artifacts.
      const env: NodeJS.ProcessEnv = { ...process.env };
      for (const k of ['DATABASE_URL', 'DATA_DIR', 'ARTIFACTS_DIR']) delete env[k];
      const byId = JSON.parse(
        (await run(process.execPath, [CLI, 'eval', '--model', qatModel.id, '--data', path.join(pets, 'val'), '--json'], { cwd, env })).stdout,
      ) as EvalReport;
      expect(byId.images).toBe(10);
      expect(byId.skipped).toEqual([]);
      expect(byId.top1).toBeCloseTo(manifest.accuracy.int8Top1, 10);
      expect(byId.confusion).toEqual(manifest.evaluation!.confusion);
      const byFile = await run(process.execPath, [CLI, 'eval', '--model', path.join(modelDir, 'model.onnx'), '--data', path.join(pets, 'val')], { cwd, env });
      expect(byFile.stdout).toContain(`top-1 ${(manifest.accuracy.int8Top1 * 100).toFixed(2)}%`);
      expect(byFile.stdout).toMatch(/confusion \(rows: true class, columns: predicted, in class order\):\n {2}cool/);

      // Bad input: a clear message and exit code 2, no stack trace.
      const bad = await run(process.execPath, [CLI, 'eval', '--model', qatModel.id, '--data', pets], { cwd, env }).catch(
        (e: { code: number; stderr: string }) => e,
      );
      expect((bad as { code: number }).code).toBe(2);
      expect((bad as { stderr: string }).stderr).toMatch(/class folders the model does not know: train, val/);
      const missing = await run(process.execPath, [CLI, 'eval', '--model', 'no-such-model', '--data', pets], { cwd, env }).catch(
        (e: { code: number; stderr: string }) => e,
      );
      expect((missing as { code: number }).code).toBe(2);
      expect((missing as { stderr: string }).stderr).toMatch(/no model with id "no-such-model"/);
    } catch (err) {
      await srv.stop();
      throw err;
    }
    expect(await srv.stop()).toBe(0);
  });
});
