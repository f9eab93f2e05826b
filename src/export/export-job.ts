// Export of a finished training job: checkpoint -> int8 QuantGraph -> ONNX QDQ file + manifest,
// verified against the tfjs fake-quant model before anything is written. The worker calls
// exportJobModel after training and records the result as the job's Model row; a verification
// failure throws ExportVerificationError (code EXPORT_VERIFICATION_FAILED) and leaves no files.
//
// The steps, in order: load the checkpoint and build the candidates (export-job-verify.ts) ->
// collect logits on the verification images -> choose the candidate that verifies -> its
// accuracies and the int8 file on the whole validation split (export-job-evaluate.ts) -> fusion check -> manifest and files (export-job-write.ts).
import type { TrainingConfig } from '../config/training-config.js';
import { loadTrainedModel, type EvalLogits } from '../ml/index.js';
import type { PhaseListener } from '../ml/train-api.js';
import { spreadIndices } from '../ml/evaluate.js';
import { loadDataset, type Dataset } from '../data/index.js';
import { quantGraphToFloatOnnx } from './onnx-float.js';
import { expectedKernels, fusionReport, optimizedOpCounts } from './fusion-check.js';
import type { ModelManifest, WeightEncoding } from './manifest.js';
import { DEFAULT_MAX_LOGIT_DIFF_STEPS, DEFAULT_MIN_AGREEMENT, ExportVerificationError } from './verify.js';
import {
  buildCandidates,
  chooseCandidate,
  collectVerificationLogits,
  encodingsFor,
  knownLogits,
  releaseCandidates,
  type Candidate,
} from './export-job-verify.js';
import { chanceWarning, evaluateOnnxOnSplit, evaluationOfLogits, verificationAccuracy } from './export-job-evaluate.js';
import { buildManifest, writeModelFiles } from './export-job-write.js';
import { silentLogger, type Logger } from '../logger.js';

export interface ExportJobOptions {
  jobId: string;
  /** Stops the export between batches (it throws the signal's reason); nothing is written after. */
  signal?: AbortSignal;
  /** The job's resolved training config (its dataset is used for the verification images). */
  config: TrainingConfig;
  /** Checkpoint directory (or the run's checkpoints directory: its newest checkpoint). */
  checkpoint: string;
  /** Where model.onnx and manifest.json go (created if missing). */
  outDir: string;
  /**
   * A writable directory for a file needed only for a moment (ONNX Runtime's optimized graph, for
   * the fusion check). Default: the OS's temp directory, which `docker run --read-only` and
   * Kubernetes' readOnlyRootFilesystem leave read-only: every job failed its export there
   * (EXPORT_FAILED, EROFS) until the worker passed its job's scratch.
   */
  tmpDir?: string;
  dataRoot: string;
  log?: Logger;
  /** Validation images to verify on (default DEFAULT_VERIFY_IMAGES, fewer if the split is smaller). */
  verifyImages?: number;
  /**
   * The trainer's logits on the verification images (TrainResult.evalLogits, from runTraining with
   * keepEvalLogits = verifyImages): what the model computed in training, used instead of running
   * it again here when they are of the checkpoint's step and the same images. At 224 px that
   * second run took most of the export (73 s of 80 for 1,000 images on one thread). With
   * `scored` (an int8 scorer's logits on every row, its fingerprint that of the file the scorer
   * runs for this graph: int8ScorerModel), that file's verification and whole-split evaluation
   * are read from them too.
   */
  evalLogits?: EvalLogits;
  /**
   * The job's data set as training left it (TrainResult.dataset), its validation images decoded
   * and cached: the verification and the evaluation of the file read them instead of decoding
   * them again (about 10 s of a 224 px export of 2,000 JPEG photos). Absent: loaded from `config`.
   */
  dataset?: Dataset;
  /**
   * 'auto' (default): int8-stored weights. For 8-bit models, if those do not verify, the same
   * values stored as uint8 (ORT's u8s8 kernels saturate on x86 CPUs without VNNI; its u8u8 kernels
   * do not, but run at about float speed). 7-bit models cannot saturate: int8 storage only.
   */
  weightEncoding?: 'auto' | WeightEncoding;
  minAgreement?: number;
  maxLogitDiffSteps?: number;
  /**
   * Images also run through the plain-JS integer reference of the int8 graph (default 8; 0 skips).
   * ORT must match it to the step; this tells a broken file apart from a tfjs model that drifts
   * from its own int8 graph (the tfjs side runs that graph in integers, so it should not).
   */
  referenceImages?: number;
  /** Problems that do not stop the export (MODEL_AT_CHANCE); they are also listed in the manifest. */
  onWarning?: (w: { code: string; message: string }) => void;
  /** The export's `exporting` phase: each task as it starts, images as they are run; null at the end. */
  onPhase?: PhaseListener;
}

/**
 * The written files and their manifest. Everything the export measured is in the manifest, so the
 * worker records the Model row from it (src/db/model-rows.ts newModelFromManifest), never from a copy.
 */
export interface ExportJobResult {
  onnxPath: string;
  manifestPath: string;
  manifest: ModelManifest;
}

/** Validation images the export verifies on unless told otherwise (fewer when the split is smaller). */
export const DEFAULT_VERIFY_IMAGES = 1000;

export async function exportJobModel(opts: ExportJobOptions): Promise<ExportJobResult> {
  const log = opts.log ?? silentLogger;
  const task = (name: string, done: number | null = null, total: number | null = null) => opts.onPhase?.({ name: 'exporting', task: name, done, total });
  const counted = (name: string) => (done: number, total: number) => task(name, done, total);
  opts.signal?.throwIfAborted();
  task('building the int8 ONNX file');
  const model = await loadTrainedModel(opts.checkpoint);
  let candidates: Candidate[] = [];
  try {
    const graph = model.toQuantGraph();
    const weightBits = graph.weightBits ?? 8;
    const encodings = encodingsFor(weightBits, opts.weightEncoding);
    candidates = await buildCandidates(graph, opts.jobId, encodings);

    const ds = opts.dataset ?? (await loadDataset(opts.config.dataset, { dataRoot: opts.dataRoot, inputSize: model.inputSize }));
    const indices = spreadIndices(ds.val.length, opts.verifyImages ?? DEFAULT_VERIFY_IMAGES);
    if (indices.length === 0)
      throw new ExportVerificationError('no validation images to verify the export on', {
        images: 0,
        agreement: 0,
        maxLogitDiffSteps: Infinity,
        worstRows: [],
      });
    const known = knownLogits(opts.evalLogits, model, indices, graph, ds.val.length);
    log.info({ images: indices.length, encodings, fromTraining: Object.keys(known ?? {}) }, 'export: verifying int8 ONNX against the fake-quant model');
    const verifying = 'verifying the int8 file against the trained model';
    task(verifying, 0, indices.length);
    const logits = await collectVerificationLogits(model, ds, indices, candidates, graph, {
      signal: opts.signal,
      onBatch: counted(verifying),
      onReference: counted('checking it against the int8 graph computed in plain integers'),
      referenceImages: opts.referenceImages ?? 8,
      widthMultiplier: opts.config.model.widthMultiplier,
      known,
    });
    const gate = {
      step: graph.nodes.find((n) => n.output === graph.output)!.outQuant.scale,
      minAgreement: opts.minAgreement ?? DEFAULT_MIN_AGREEMENT,
      maxSteps: opts.maxLogitDiffSteps ?? DEFAULT_MAX_LOGIT_DIFF_STEPS,
    };
    const verified = chooseCandidate(candidates, logits, gate, log);
    const accuracy = verificationAccuracy(logits, verified.ortLogits);
    // The chosen file is the one training's final evaluation ran (its storage, fingerprint checked
    // in knownLogits): its logits on the split are already known.
    const reuse = verified.chosen.encoding === known?.scoredEncoding && known.scored;
    log.info({ images: ds.val.length, fromTraining: Boolean(reuse) }, 'export: evaluating the int8 ONNX model on the validation split');
    const scoring = 'int8 top-1 of the file on the validation split';
    task(scoring, reuse ? ds.val.length : 0, ds.val.length);
    const evaluation = reuse
      ? evaluationOfLogits(reuse, ds.val.labels, model.classes.length)
      : await evaluateOnnxOnSplit(verified.chosen.runner, ds.val, model.classes.length, model.inputSize, {
          signal: opts.signal,
          onBatch: counted(scoring),
        });
    const warnings = [chanceWarning(evaluation, model.classes.length)].filter((w) => w !== null);
    for (const w of warnings) {
      log.warn({ code: w.code }, `export: ${w.message}`);
      opts.onWarning?.(w);
    }

    opts.signal?.throwIfAborted();
    task('checking that ONNX Runtime runs it in integer kernels');
    const fusion = fusionReport(await optimizedOpCounts(verified.chosen.bytes, opts.tmpDir), expectedKernels(graph));
    if (!fusion.fullyFused) log.warn({ fusion }, 'export: ORT did not fuse the whole graph into integer kernels; it will run slower');
    const float32SizeBytes = quantGraphToFloatOnnx(graph).length;
    const manifest = buildManifest({ jobId: opts.jobId, model, graph, verified, accuracy, evaluation, warnings, fusion, float32SizeBytes });
    opts.signal?.throwIfAborted();
    task('writing the model files');
    const { onnxPath, manifestPath } = await writeModelFiles(opts.outDir, verified.chosen.bytes, manifest);
    log.info(
      { onnxPath, sizeBytes: manifest.sizeBytes, float32SizeBytes, ...accuracy, weightEncoding: verified.chosen.encoding, weightBits },
      'export: model written',
    );
    return { onnxPath, manifestPath, manifest };
  } finally {
    await releaseCandidates(candidates);
    model.dispose();
    opts.onPhase?.(null);
  }
}
