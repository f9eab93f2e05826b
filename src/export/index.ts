// Export of a finished training job: checkpoint -> int8 QuantGraph -> ONNX QDQ file + manifest,
// verified against the tfjs fake-quant model before anything is written. The worker calls
// exportJobModel after training and records the result as the job's Model row; a verification
// failure throws ExportVerificationError (code EXPORT_VERIFICATION_FAILED) and leaves no files.
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TrainingConfig } from '../jobs/training-config.js';
import { loadTrainedModel } from '../ml/index.js';
import { FLATTEN_BACKGROUND, loadDataset } from '../data/index.js';
import { ONNX_OPSET, quantGraphToFloatOnnx, quantGraphToQdqOnnx } from './onnx-qdq.js';
import { expectedKernels, fusionReport, optimizedOpCounts } from './fusion-check.js';
import { runIntegerReference } from './qdq-reference.js';
import { MANIFEST_FORMAT, MANIFEST_VERSION, type ModelManifest } from './manifest.js';
import {
  argmaxRows,
  compareLogits,
  DEFAULT_MAX_LOGIT_DIFF_STEPS,
  DEFAULT_MIN_AGREEMENT,
  ExportVerificationError,
  nhwcToNchw,
  OnnxRunner,
  top1Accuracy,
  verificationFailure,
  type LogitComparison,
} from './verify.js';

export { ExportVerificationError } from './verify.js';
export type { ModelManifest } from './manifest.js';
export { quantGraphToQdqOnnx, quantGraphToFloatOnnx } from './onnx-qdq.js';

export const MODEL_FILE = 'model.onnx';
export const MANIFEST_FILE = 'manifest.json';

export interface ExportLogger {
  info(msg: string, extra?: object): void;
  warn(msg: string, extra?: object): void;
}

export interface ExportJobOptions {
  jobId: string;
  /** The job's resolved training config (its dataset is used for the verification images). */
  config: TrainingConfig;
  /** Checkpoint directory (or the run's checkpoints directory: its newest checkpoint). */
  checkpoint: string;
  /** Where model.onnx and manifest.json go (created if missing). */
  outDir: string;
  dataRoot: string;
  log?: ExportLogger;
  /** Validation images to verify on (default 1000, fewer if the split is smaller). */
  verifyImages?: number;
  /**
   * 'auto' (default): int8-stored weights. For 8-bit models, if those do not verify, the same
   * values stored as uint8 (ORT's u8s8 kernels saturate on x86 CPUs without VNNI; its u8u8 kernels
   * do not, but run at about float speed). 7-bit models cannot saturate: int8 storage only.
   */
  weightEncoding?: 'auto' | 'int8' | 'uint8';
  minAgreement?: number;
  maxLogitDiffSteps?: number;
  /**
   * Images also run through the plain-JS integer reference of the int8 graph (default 8; 0 skips).
   * ORT must match it to the step; this tells a broken file apart from a tfjs model that drifts
   * from its own int8 graph (the tfjs side runs that graph in integers, so it should not).
   */
  referenceImages?: number;
}

export interface ExportJobResult {
  onnxPath: string;
  manifestPath: string;
  sizeBytes: number;
  float32SizeBytes: number;
  sha256: string;
  inputSize: number;
  classes: string[];
  floatTop1: number;
  int8Top1: number;
  agreement: number;
  maxLogitDiffSteps: number;
  /** Largest |ORT - integer reference| over `referenceImages` images, in logit steps (null: skipped). */
  maxStepsVsIntegerReference: number | null;
  weightEncoding: 'int8' | 'uint8';
  weightBits: 7 | 8;
}

const CHUNK = 32;

/** `count` indices spread evenly over [0, length), so class-ordered splits are covered. */
export function spreadIndices(length: number, count: number): number[] {
  const m = Math.min(length, count);
  return Array.from({ length: m }, (_, i) => Math.floor((i * length) / m));
}

async function writeAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

export async function exportJobModel(opts: ExportJobOptions): Promise<ExportJobResult> {
  const log = opts.log ?? { info: () => {}, warn: () => {} };
  const minAgreement = opts.minAgreement ?? DEFAULT_MIN_AGREEMENT;
  const maxSteps = opts.maxLogitDiffSteps ?? DEFAULT_MAX_LOGIT_DIFF_STEPS;
  const model = await loadTrainedModel(opts.checkpoint);
  const runners: Array<{ encoding: 'int8' | 'uint8'; bytes: Uint8Array; runner: OnnxRunner; logits: Float32Array[] }> = [];
  try {
    const graph = model.toQuantGraph();
    const size = model.inputSize;
    const k = model.classes.length;
    const step = graph.nodes.find((n) => n.output === graph.output)!.outQuant.scale;
    const weightBits = graph.weightBits ?? 8;
    const encodings: Array<'int8' | 'uint8'> =
      opts.weightEncoding === 'int8' ? ['int8'] : opts.weightEncoding === 'uint8' ? ['uint8'] : weightBits === 7 ? ['int8'] : ['int8', 'uint8'];
    for (const encoding of encodings) {
      const bytes = quantGraphToQdqOnnx(graph, { weightEncoding: encoding, metadata: { jobId: opts.jobId } });
      runners.push({ encoding, bytes, runner: await OnnxRunner.create(bytes), logits: [] });
    }

    const ds = await loadDataset(opts.config.dataset, { dataRoot: opts.dataRoot, inputSize: size });
    const indices = spreadIndices(ds.val.length, opts.verifyImages ?? 1000);
    const n = indices.length;
    if (n === 0) throw new ExportVerificationError('no validation images to verify the export on', { images: 0, agreement: 0, maxLogitDiffSteps: Infinity, worstRows: [] });
    log.info('export: verifying int8 ONNX against the fake-quant model', { images: n, encodings });
    const tfLogits = new Float32Array(n * k);
    const floatLogits = new Float32Array(n * k);
    const labels = new Int32Array(n);
    for (let lo = 0; lo < n; lo += CHUNK) {
      const chunk = indices.slice(lo, lo + CHUNK);
      const b = await ds.val.batch(chunk, { augment: false, seed: 0, epoch: 0, step: 0 });
      labels.set(b.y, lo);
      tfLogits.set(await model.predict(b.x, b.n), lo * k);
      floatLogits.set(await model.predictFloat(b.x, b.n), lo * k);
      const nchw = nhwcToNchw(b.x, b.n, size);
      for (const r of runners) r.logits.push(await r.runner.run(nchw, b.n, size));
    }

    // The int8 graph's own arithmetic, for the first few images: what ORT must reproduce.
    const nRef = Math.min(n, opts.referenceImages ?? 8);
    let refLogits: Float32Array | null = null;
    if (nRef > 0) {
      const b = await ds.val.batch(indices.slice(0, nRef), { augment: false, seed: 0, epoch: 0, step: 0 });
      refLogits = runIntegerReference(graph, nhwcToNchw(b.x, b.n, size), b.n);
    }
    const stepsVsReference = (ortLogits: Float32Array): number | null =>
      refLogits ? compareLogits(ortLogits.subarray(0, nRef * k), refLogits, nRef, k, step, maxSteps).maxLogitDiffSteps : null;

    let chosen: (typeof runners)[number] | undefined;
    let comparison: LogitComparison | undefined;
    let failure: string | null = null;
    for (const r of runners) {
      const ortLogits = concat(r.logits, n * k);
      const c = compareLogits(ortLogits, tfLogits, n, k, step, maxSteps);
      let why = verificationFailure(c, minAgreement, maxSteps);
      const vsRef = stepsVsReference(ortLogits);
      log.info('export: verification', { weightEncoding: r.encoding, agreement: c.agreement, maxLogitDiffSteps: c.maxLogitDiffSteps, maxStepsVsIntegerReference: vsRef });
      if (!why && vsRef !== null && vsRef > 1) {
        // Whatever the tolerance towards the tfjs model, the file must compute its own int8 graph.
        why = `int8 ONNX model does not compute its int8 graph: ORT differs from the integer reference by ${vsRef} logit steps on ${nRef} images`;
      } else if (why && vsRef !== null) {
        why += vsRef <= 1
          ? `. The ONNX file reproduces the int8 graph's integer arithmetic (${vsRef} steps on ${nRef} images): the drift is between the int8 graph and the tfjs fake-quant model`
          : `. The ONNX file also differs from the int8 graph's integer reference by ${vsRef} steps on ${nRef} images`;
      }
      if (!why) {
        chosen = r;
        comparison = c;
        break;
      }
      // The last candidate (uint8 storage, exact on every CPU) is the one that matters; earlier
      // failures are mentioned after it.
      failure = failure === null ? why : `${why} [with ${runners[0].encoding}-stored weights: ${failure}]`;
      comparison = c;
      if (runners.length > 1 && r.encoding === 'int8') {
        log.warn('export: int8-stored weights do not verify on this CPU; trying uint8 storage', { reason: why });
      }
    }
    if (!chosen) throw new ExportVerificationError(failure!, comparison!);

    const ortLogits = concat(chosen.logits, n * k);
    const int8Top1 = top1Accuracy(argmaxRows(ortLogits, n, k), labels);
    const floatTop1 = top1Accuracy(argmaxRows(floatLogits, n, k), labels);
    const fusion = fusionReport(await optimizedOpCounts(chosen.bytes), expectedKernels(graph));
    if (!fusion.fullyFused) log.warn('export: ORT did not fuse the whole graph into integer kernels; it will run slower', { fusion });

    const float32SizeBytes = quantGraphToFloatOnnx(graph).length;
    const sha256 = createHash('sha256').update(chosen.bytes).digest('hex');
    const kernels = expectedKernels(graph);
    const manifest: ModelManifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      jobId: opts.jobId,
      createdAt: new Date().toISOString(),
      file: MODEL_FILE,
      sha256,
      sizeBytes: chosen.bytes.length,
      float32SizeBytes,
      classes: [...model.classes],
      input: { name: graph.input.name, layout: 'NCHW', dtype: 'float32', size },
      output: { name: graph.output, dtype: 'float32', meaning: 'logits' },
      preprocess: {
        resize: 'short-side-then-center-crop',
        colorSpace: 'srgb',
        alphaBackground: { ...FLATTEN_BACKGROUND },
        normalization: model.normalization,
      },
      quantization: {
        format: 'onnx-qdq',
        opset: ONNX_OPSET,
        activationType: 'uint8 asymmetric per-tensor',
        weightType: 'int8 symmetric per-channel',
        weightEncoding: chosen.encoding,
        weightBits,
        input: graph.input.quant,
        logits: graph.nodes.find((nd) => nd.output === graph.output)!.outQuant,
        convs: kernels.convs,
        adds: kernels.adds,
        activations: [
          { tensor: graph.input.name, ...graph.input.quant },
          ...graph.nodes.map((nd) => ({ tensor: nd.output, scale: nd.outQuant.scale, zeroPoint: nd.outQuant.zeroPoint })),
        ],
        fusion,
      },
      accuracy: {
        images: n,
        floatTop1,
        int8Top1,
        agreement: comparison!.agreement,
        maxLogitDiffSteps: comparison!.maxLogitDiffSteps,
        maxStepsVsIntegerReference: stepsVsReference(ortLogits),
      },
      checkpoint: { step: model.step },
    };

    await mkdir(opts.outDir, { recursive: true });
    const onnxPath = path.join(opts.outDir, MODEL_FILE);
    const manifestPath = path.join(opts.outDir, MANIFEST_FILE);
    await writeAtomic(onnxPath, chosen.bytes);
    try {
      await writeAtomic(manifestPath, JSON.stringify(manifest, null, 2));
    } catch (err) {
      await rm(onnxPath, { force: true });
      throw err;
    }
    log.info('export: model written', { onnxPath, sizeBytes: manifest.sizeBytes, float32SizeBytes, int8Top1, floatTop1, weightEncoding: chosen.encoding, weightBits });
    return {
      onnxPath,
      manifestPath,
      sizeBytes: manifest.sizeBytes,
      float32SizeBytes,
      sha256,
      inputSize: size,
      classes: manifest.classes,
      floatTop1,
      int8Top1,
      agreement: comparison!.agreement,
      maxLogitDiffSteps: comparison!.maxLogitDiffSteps,
      maxStepsVsIntegerReference: stepsVsReference(ortLogits),
      weightEncoding: chosen.encoding,
      weightBits,
    };
  } finally {
    for (const r of runners) await r.runner.release().catch(() => {});
    model.dispose();
  }
}

function concat(parts: Float32Array[], total: number): Float32Array {
  const out = new Float32Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
