// Export step 2: verification. The int8 ONNX candidates (int8-stored weights, then uint8-stored as
// a fallback) run on the same validation images as the tfjs model they came from; the first one
// whose logits match (top-1 agreement and at most a few logit steps) is the model that ships.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { Dataset } from '../data/index.js';
import type { EvalLogits, TrainedModel } from '../ml/index.js';
import type { QuantGraph } from '../ml/quant-graph.js';
import { evalBatchSize } from '../ml/evaluate.js';
import { inWasmPhase } from '../ml/wasm-abort.js';
import { fileMetadata } from './file-contract.js';
import { quantGraphToQdqOnnx } from './onnx-qdq.js';
import { int8ScorerModel, onnxFingerprint, scorerWeightEncoding } from './onnx-scorer.js';
import { runIntegerReference } from './qdq-reference.js';
import type { Logger } from '../logger.js';
import type { WeightEncoding } from './manifest.js';
import { compareLogits, ExportVerificationError, nhwcToNchw, OnnxRunner, verificationFailure, type LogitComparison } from './verify.js';

/** One ONNX file being considered, its ORT session, and its logits on the verification images. */
export interface Candidate {
  encoding: WeightEncoding;
  bytes: Uint8Array;
  runner: OnnxRunner;
  logits: Float32Array[];
}

/** The logits every side produced on the verification images (n rows of k classes). */
export interface VerificationLogits {
  n: number;
  k: number;
  labels: Int32Array;
  /** The tfjs int8 graph (what training reported). */
  tfLogits: Float32Array;
  /** The tfjs float model (fake quantization off). */
  floatLogits: Float32Array;
  /** The plain-JS integer reference on the first `nRef` images (null when skipped). */
  refLogits: Float32Array | null;
  nRef: number;
}

/** The candidate that verified, with its comparison. */
export interface Verified {
  chosen: Candidate;
  comparison: LogitComparison;
  ortLogits: Float32Array;
  /** Largest |ORT - integer reference| in logit steps (null: no reference images). */
  maxStepsVsIntegerReference: number | null;
}

/** Weight storages to try: int8 for 7-bit weights, int8 then uint8 for 8-bit ones (see ExportJobOptions). */
export function encodingsFor(weightBits: 7 | 8, requested: 'auto' | WeightEncoding = 'auto'): WeightEncoding[] {
  if (requested !== 'auto') return [requested];
  return weightBits === 7 ? ['int8'] : ['int8', 'uint8'];
}

/** Writes each candidate's ONNX bytes and opens an ORT session on it (release them with releaseCandidates). */
export async function buildCandidates(graph: QuantGraph, jobId: string, encodings: WeightEncoding[]): Promise<Candidate[]> {
  const out: Candidate[] = [];
  try {
    for (const encoding of encodings) {
      const bytes = quantGraphToQdqOnnx(graph, { weightEncoding: encoding, metadata: fileMetadata(graph, encoding, jobId) });
      out.push({ encoding, bytes, runner: await OnnxRunner.create(bytes), logits: [] });
    }
    return out;
  } catch (err) {
    await releaseCandidates(out);
    throw err;
  }
}

export async function releaseCandidates(candidates: Candidate[]): Promise<void> {
  for (const c of candidates) await c.runner.release().catch(() => {});
}

/** What the export need not compute again: the trainer's logits on the verification images, and its scorer's on every row. */
export interface KnownLogits {
  int8?: Float32Array;
  float?: Float32Array;
  /** The scorer's file's ORT logits on every validation row (EvalLogits.scored, fingerprint checked). */
  scored?: Float32Array;
  /** How that file stores its weights: the candidate whose logits `scored` are. */
  scoredEncoding?: WeightEncoding;
}

/**
 * The trainer's logits (TrainResult.evalLogits) where they are the model's on these images: of the
 * checkpoint's step, the same validation rows and classes; and its int8 scorer's on every row
 * where the scorer ran this graph's int8-stored file (fingerprint) on a split of this length.
 * Null when none applies (a run evaluated at another step, a different image count), and the
 * export computes them itself.
 */
export function knownLogits(e: EvalLogits | undefined, model: TrainedModel, indices: number[], graph: QuantGraph, valLength: number): KnownLogits | null {
  if (!e || e.step !== model.step || e.classes !== model.classes.length) return null;
  const known: KnownLogits = {};
  if (e.scored?.logits.length === valLength * e.classes && e.scored.fingerprint === onnxFingerprint(int8ScorerModel(graph))) {
    known.scored = e.scored.logits;
    known.scoredEncoding = scorerWeightEncoding(graph);
  }
  const size = indices.length * e.classes;
  const sameRows = e.rows.length === indices.length && e.rows.every((r, i) => r === indices[i]);
  if (sameRows && e.int8?.length === size) known.int8 = e.int8;
  if (sameRows && e.float?.length === size) known.float = e.float;
  return known.int8 || known.float || known.scored ? known : null;
}

/** Rows `indices` of row-major logits with k classes. */
function pickRows(logits: Float32Array, indices: number[], k: number): Float32Array {
  const out = new Float32Array(indices.length * k);
  indices.forEach((r, i) => out.set(logits.subarray(r * k, (r + 1) * k), i * k));
  return out;
}

/**
 * Runs the verification images (`indices` of the validation split) through the tfjs int8 graph,
 * the tfjs float model (each unless `known`) and every candidate (the int8-stored one unless
 * `known.scored`), in batches sized by pixels: peak memory depends on the batch, not on how many
 * images are verified. Images are read only where something still needs them. A wasm abort
 * becomes WASM_ABORTED (phase verify).
 */
export async function collectVerificationLogits(
  model: TrainedModel,
  ds: Dataset,
  indices: number[],
  candidates: Candidate[],
  graph: QuantGraph,
  opts: {
    referenceImages: number;
    widthMultiplier: number;
    known?: KnownLogits | null;
    signal?: AbortSignal;
    /** Verification images run so far, after each batch (none when every model's logits are known). */
    onBatch?: (done: number, total: number) => void;
    /** Images the integer reference has run, before each and after the last. */
    onReference?: (done: number, total: number) => void;
  },
): Promise<VerificationLogits> {
  const size = model.inputSize;
  const k = model.classes.length;
  const n = indices.length;
  const batch = evalBatchSize(size);
  const known = opts.known ?? {};
  const sizes = () => ({ widthMultiplier: opts.widthMultiplier, inputSize: size, batchSize: batch, valImages: ds.val.length });
  return inWasmPhase('verify', sizes, async () => {
    const labels = Int32Array.from(indices, (r) => ds.val.labels[r]);
    const tfLogits = known.int8 ?? new Float32Array(n * k);
    const floatLogits = known.float ?? new Float32Array(n * k);
    const toRun: Candidate[] = [];
    for (const c of candidates) {
      if (known.scored && c.encoding === known.scoredEncoding) c.logits.push(pickRows(known.scored, indices, k));
      else toRun.push(c);
    }
    if (!known.int8 || !known.float || toRun.length > 0) {
      for (let lo = 0; lo < n; lo += batch) {
        opts.signal?.throwIfAborted();
        const b = await ds.val.batch(indices.slice(lo, lo + batch), { augment: false, seed: 0, epoch: 0, step: 0 });
        if (!known.int8) tfLogits.set(await model.predict(b.x, b.n), lo * k);
        if (!known.float) floatLogits.set(await model.predictFloat(b.x, b.n), lo * k);
        const nchw = nhwcToNchw(b.x, b.n, size);
        for (const c of toRun) c.logits.push(await c.runner.run(nchw, b.n, size));
        opts.onBatch?.(lo + b.n, n);
      }
    }
    // The int8 graph's own arithmetic, for the first few images: what ORT must reproduce. An image at
    // a time (plain JS: 4 s for 8 at 224 px), yielding between them so that a stop is heard.
    opts.signal?.throwIfAborted();
    const nRef = Math.min(n, opts.referenceImages);
    let refLogits: Float32Array | null = null;
    if (nRef > 0) {
      const b = await ds.val.batch(indices.slice(0, nRef), { augment: false, seed: 0, epoch: 0, step: 0 });
      const x = nhwcToNchw(b.x, b.n, size);
      const pixels = 3 * size * size;
      refLogits = new Float32Array(nRef * k);
      for (let i = 0; i < nRef; i++) {
        opts.onReference?.(i, nRef);
        await yieldToLoop();
        opts.signal?.throwIfAborted();
        refLogits.set(runIntegerReference(graph, x.subarray(i * pixels, (i + 1) * pixels), 1), i * k);
      }
      opts.onReference?.(nRef, nRef);
    }
    return { n, k, labels, tfLogits, floatLogits, refLogits, nRef };
  });
}

/** |ORT - integer reference| on the reference images, in logit steps (null when there are none). */
function stepsVsReference(v: VerificationLogits, ortLogits: Float32Array, step: number, maxSteps: number): number | null {
  return v.refLogits ? compareLogits(ortLogits.subarray(0, v.nRef * v.k), v.refLogits, v.nRef, v.k, step, maxSteps).maxLogitDiffSteps : null;
}

/**
 * The first candidate that reproduces the tfjs model (and its own int8 graph); throws
 * ExportVerificationError naming every candidate's failure otherwise.
 */
export function chooseCandidate(
  candidates: Candidate[],
  v: VerificationLogits,
  gate: { step: number; minAgreement: number; maxSteps: number },
  log: Logger,
): Verified {
  const { n, k, nRef } = v;
  let comparison: LogitComparison | undefined;
  let failure: string | null = null;
  for (const c of candidates) {
    const ortLogits = concat(c.logits, n * k);
    const cmp = compareLogits(ortLogits, v.tfLogits, n, k, gate.step, gate.maxSteps);
    let why = verificationFailure(cmp, gate.minAgreement, gate.maxSteps);
    const vsRef = stepsVsReference(v, ortLogits, gate.step, gate.maxSteps);
    log.info(
      { weightEncoding: c.encoding, agreement: cmp.agreement, maxLogitDiffSteps: cmp.maxLogitDiffSteps, maxStepsVsIntegerReference: vsRef },
      'export: verification',
    );
    if (!why && vsRef !== null && vsRef > 1) {
      // Whatever the tolerance towards the tfjs model, the file must compute its own int8 graph.
      why = `int8 ONNX model does not compute its int8 graph: ORT differs from the integer reference by ${vsRef} logit steps on ${nRef} images`;
    } else if (why && vsRef !== null) {
      why +=
        vsRef <= 1
          ? `. The ONNX file reproduces the int8 graph's integer arithmetic (${vsRef} steps on ${nRef} images): the drift is between the int8 graph and the tfjs fake-quant model`
          : `. The ONNX file also differs from the int8 graph's integer reference by ${vsRef} steps on ${nRef} images`;
    }
    if (!why) return { chosen: c, comparison: cmp, ortLogits, maxStepsVsIntegerReference: vsRef };
    // The last candidate (uint8 storage, exact on every CPU) is the one that matters; earlier
    // failures are mentioned after it.
    failure = failure === null ? why : `${why} [with ${candidates[0].encoding}-stored weights: ${failure}]`;
    comparison = cmp;
    if (candidates.length > 1 && c.encoding === 'int8') {
      log.warn({ reason: why }, 'export: int8-stored weights do not verify on this CPU; trying uint8 storage');
    }
  }
  throw new ExportVerificationError(failure!, comparison!);
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
