// Issue 5's end-to-end check with real data: a Fashion-MNIST job trained by `qatserve serve`
// succeeds, its int8 model verifies and serves, and /v1/predict on the validation images, posted
// as the 28x28 grey PNGs a user holds, scores the accuracy the model reports.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import {
  balancedCounts,
  FASHION_MNIST_CLASSES,
  FASHION_SIDE,
  FASHION_TEST_PER_CLASS,
  FASHION_TRAIN_PER_CLASS,
  fashionSplit,
  loadFashionMnistPixels,
} from '../../src/data/fashion-mnist.js';
import { startServe, submitJob, waitForJob } from './serve-process.js';

const TEST_IMAGES = 200;
const JOB = {
  name: 'fashion-mnist e2e',
  dataset: { type: 'fashion-mnist', limit: 1500, testLimit: TEST_IMAGES },
  model: { widthMultiplier: 0.35, inputSize: 32 },
  training: { epochs: 2, batchSize: 32, learningRate: 0.05, warmupEpochs: 0.2 },
};

interface ModelDetail {
  model: { id: string; jobId: string; serving: boolean; int8Top1: number; floatTop1: number; agreement: number; sizeBytes: number; float32SizeBytes: number };
  manifest: { accuracy: { images: number; int8Top1: number }; classes: string[] };
}

describe('fashion-mnist end to end', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-fashion-'));
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('trains, verifies and serves a model whose /predict accuracy on the test images is the reported one', async () => {
    const srv = await startServe(cwd, 'fashion');
    const { base, log } = srv;
    try {
      const id = await submitJob(base, JOB);
      const job = await waitForJob(base, id, 420_000);
      expect(job.status, `${JSON.stringify(job.error)}\n${log()}`).toBe('succeeded');

      const list = (await (await fetch(`${base}/v1/models`)).json()) as { items: Array<{ id: string; jobId: string }>; servingId: string };
      const mine = list.items.find((m) => m.jobId === id);
      expect(mine, 'the job exported a model').toBeDefined();
      expect(list.servingId).toBe(mine!.id);
      const detail = (await (await fetch(`${base}/v1/models/${mine!.id}`)).json()) as ModelDetail;
      expect(detail.manifest.classes).toEqual([...FASHION_MNIST_CLASSES]);
      expect(detail.manifest.accuracy.images).toBe(TEST_IMAGES);
      expect(detail.model.agreement).toBeGreaterThanOrEqual(0.995);

      // The job's validation images are the first TEST_IMAGES/10 test images of each class.
      const split = fashionSplit(await loadFashionMnistPixels(), balancedCounts(TEST_IMAGES, 10, FASHION_TEST_PER_CLASS), FASHION_TRAIN_PER_CLASS);
      let correct = 0;
      for (let i = 0; i < TEST_IMAGES; i++) {
        const png = await sharp(Buffer.from(split.get(i).data), { raw: { width: FASHION_SIDE, height: FASHION_SIDE, channels: 1 } })
          .png()
          .toBuffer();
        const res = await fetch(`${base}/v1/predict?topK=1`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { model: { id: string }; predictions: Array<{ index: number; label: string }> };
        expect(body.model.id).toBe(mine!.id);
        expect(body.predictions[0].label).toBe(FASHION_MNIST_CLASSES[body.predictions[0].index]);
        if (body.predictions[0].index === split.labels[i]) correct++;
      }
      const served = correct / TEST_IMAGES;
      const reported = detail.manifest.accuracy.int8Top1;
      // Same pixels (one resize pipeline), same int8 file: the figures are equal, not just close.
      expect(served, `served ${served}, reported ${reported}`).toBe(reported);
      // And the model learned: well above the 10% of guessing after 3,000 training images.
      expect(served).toBeGreaterThan(0.4);
      console.log(
        `fashion-mnist e2e: /predict top-1 ${(served * 100).toFixed(1)}% on ${TEST_IMAGES} test images; reported int8 ${(reported * 100).toFixed(1)}%, float ${(detail.model.floatTop1 * 100).toFixed(1)}%; model ${detail.model.sizeBytes} B (${((100 * detail.model.sizeBytes) / detail.model.float32SizeBytes).toFixed(1)}% of fp32)`,
      );
    } catch (err) {
      await srv.stop();
      throw err;
    }
    expect(await srv.stop()).toBe(0);
  }, 480_000);
});
