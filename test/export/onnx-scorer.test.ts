// A run whose evaluations score on ONNX Runtime (TrainOptions.int8Scorer and floatScorer, as the
// worker trains): the reported int8 top-1 is the exported file's own on the same split, the float
// top-1 the model's own, the final evaluation's kept rows are still the tfjs int8 graph's, and the
// export verifies against them and takes the scorer's logits as its own file's.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveTrainingConfig } from '../../src/config/training-config.js';
import { loadDataset } from '../../src/data/index.js';
import { loadTrainedModel, runTraining, type EvalMetric, type TrainResult } from '../../src/ml/index.js';
import type { QuantGraph } from '../../src/ml/quant-graph.js';
import type { Scorer } from '../../src/ml/train-api.js';
import { DEFAULT_VERIFY_IMAGES, exportJobModel, onnxFloatScorer, onnxInt8Scorer } from '../../src/export/index.js';
import { evaluateOnnxOnSplit } from '../../src/export/export-job-evaluate.js';
import { OnnxRunner } from '../../src/export/verify.js';

const config = resolveTrainingConfig({
  dataset: { type: 'synthetic', classes: 3, samplesPerClass: 8, valPerClass: 12 },
  model: { widthMultiplier: 0.35, inputSize: 32 },
  // 4 epochs of 3 steps (quantization from step 6; activation ranges observed from the start):
  // evaluations at steps 3, 6, 9 and 12.
  training: { epochs: 4, batchSize: 8, learningRate: 0.05 },
});

/** `scorer`, telling `count` how many rows each call scores. */
const counted = (scorer: Scorer, count: (n: number) => void): Scorer => ({
  ...scorer,
  logits: (x, n) => {
    count(n);
    return scorer.logits(x, n);
  },
});

describe('evaluations scored by ONNX Runtime (int8Scorer, floatScorer)', () => {
  let dir: string;
  let result: TrainResult;
  const evals: EvalMetric[] = [];
  const tfjsEvals: EvalMetric[] = [];
  const graphs: QuantGraph[] = [];
  let scored = 0;
  let floatScored = 0;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'qatserve-scorer-'));
    result = await runTraining({
      config,
      workDir: path.join(dir, 'run'),
      dataRoot: dir,
      keepEvalLogits: DEFAULT_VERIFY_IMAGES,
      callbacks: { onEval: (m) => void evals.push(m) },
      int8Scorer: async (graph) => {
        graphs.push(graph);
        return counted(await onnxInt8Scorer(graph), (n) => (scored += n));
      },
      floatScorer: async (graph) => counted(await onnxFloatScorer(graph), (n) => (floatScored += n)),
    });
    // The same run scored by tfjs alone: training does not depend on who scores.
    await runTraining({ config, workDir: path.join(dir, 'run-tfjs'), dataRoot: dir, callbacks: { onEval: (m) => void tfjsEvals.push(m) } });
  }, 300_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('scores every quantized evaluation on the whole split, and reports the served file’s top-1', async () => {
    expect(evals.map((e) => e.step)).toEqual([3, 6, 9, 12]);
    expect(graphs).toHaveLength(4);
    expect(scored).toBe(4 * 36);
    // The final evaluation left the scorer's logits on every row for the export.
    expect(result.evalLogits?.scored?.logits).toHaveLength(36 * 3);
    const logs: { fromTraining?: unknown; msg: string }[] = [];
    const log = {
      info: (o: object | string, msg?: string) => void logs.push(typeof o === 'string' ? { msg: o } : { ...o, msg: msg ?? '' }),
      warn: () => {},
      error: () => {},
    };
    const exportWith = (evalLogits: typeof result.evalLogits, name: string) =>
      exportJobModel({
        jobId: 'job-scored',
        config,
        checkpoint: result.checkpoint,
        outDir: path.join(dir, name),
        dataRoot: dir,
        evalLogits,
        dataset: result.dataset,
        log,
      });
    const exported = await exportWith(result.evalLogits, 'model');
    const evaluated = (i: number) => logs.filter((l) => l.msg.startsWith('export: evaluating'))[i]?.fromTraining;
    expect(evaluated(0)).toBe(true);
    // The evaluation of the scored file is the served file's: the same figures as ORT running the
    // written model.onnx on the split.
    expect(result.eval?.top1).toBe(exported.manifest.evaluation?.top1);
    expect(result.eval?.top5).toBe(exported.manifest.evaluation?.top5);
    const runner = await OnnxRunner.create(await readFile(exported.onnxPath));
    try {
      const own = await evaluateOnnxOnSplit(runner, result.dataset.val, 3, 32);
      expect(exported.manifest.evaluation).toEqual(own);
    } finally {
      await runner.release();
    }
    // Logits that name another file are not taken: the export runs its own, to the same figures.
    const other = await exportWith({ ...result.evalLogits!, scored: { ...result.evalLogits!.scored!, fingerprint: 'sha256:another' } }, 'model-2');
    expect(evaluated(1)).toBe(false);
    expect(other.manifest.evaluation).toEqual(exported.manifest.evaluation);
    expect(other.manifest.accuracy).toEqual(exported.manifest.accuracy);
  }, 300_000);

  it("scores every float evaluation (before quantization, and beside the int8 one) with the model's top-1", () => {
    // Step 3 is float only; steps 6-12 report the float top-1 beside the int8 one.
    expect(floatScored).toBe(4 * 36);
    expect(evals.map((e) => e.floatTop1 !== undefined)).toEqual([true, true, true, true]);
    expect(tfjsEvals.map((e) => e.step)).toEqual([3, 6, 9, 12]);
    // The same weights: ONNX Runtime and tfjs differ by float rounding, which could flip one image
    // whose two best logits tie to within it.
    evals.forEach((e, i) => expect(Math.abs(e.floatTop1! - tfjsEvals[i].floatTop1!)).toBeLessThanOrEqual(1 / 36 + 1e-9));
    expect(evals[0].top1).toBe(evals[0].floatTop1);
  });

  it('falls back to tfjs, with a warning, when a scorer cannot start', async () => {
    const warnings: string[] = [];
    const logger = { info: () => {}, error: () => {}, warn: (a: unknown, b?: string) => void warnings.push(typeof a === 'string' ? a : (b ?? '')) };
    const r = await runTraining({
      config: { ...config, training: { ...config.training, epochs: 1 } },
      workDir: path.join(dir, 'run-fallback'),
      dataRoot: dir,
      logger,
      int8Scorer: () => Promise.reject(new Error('no ONNX Runtime on this platform')),
      floatScorer: () => Promise.reject(new Error('no ONNX Runtime for floats')),
    });
    expect(r.status).toBe('completed');
    expect(r.eval?.top1).toBeGreaterThanOrEqual(0);
    expect(warnings.some((w) => /int8 scorer unavailable.*no ONNX Runtime on this platform/.test(w))).toBe(true);
    expect(warnings.some((w) => /float scorer unavailable.*no ONNX Runtime for floats/.test(w))).toBe(true);
  }, 300_000);

  it("keeps the tfjs int8 graph's logits on the final evaluation's rows, for the export to check", async () => {
    const kept = result.evalLogits!;
    expect(kept.step).toBe(12);
    expect(kept.int8).toHaveLength(36 * 3);
    const model = await loadTrainedModel(result.checkpoint);
    try {
      const ds = await loadDataset(config.dataset, { dataRoot: dir, inputSize: model.inputSize });
      const b = await ds.val.batch(kept.rows, { augment: false, seed: 0, epoch: 0, step: 0 });
      const own = await model.predict(b.x, b.n);
      kept.int8!.forEach((v, i) => expect(v).toBeCloseTo(own[i], 4));
    } finally {
      model.dispose();
    }
  }, 300_000);
});
