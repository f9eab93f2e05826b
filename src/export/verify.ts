// Verification of an exported model against the model it came from: same validation images through
// onnxruntime (the int8 file) and the tfjs fake-quant model; top-1 must agree on >= 99.5% of the
// images and every logit must lie within two logit quantization steps. Pure functions plus one ORT
// runner; no tfjs here.
import * as ort from 'onnxruntime-node';

export const DEFAULT_MIN_AGREEMENT = 0.995;
export const DEFAULT_MAX_LOGIT_DIFF_STEPS = 2;

export class ExportVerificationError extends Error {
  readonly code = 'EXPORT_VERIFICATION_FAILED';
  constructor(
    message: string,
    readonly details: LogitComparison,
  ) {
    super(message);
    this.name = 'ExportVerificationError';
  }
}

export function argmaxRows(logits: Float32Array, n: number, k: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

export function top1Accuracy(pred: Int32Array, labels: ArrayLike<number>): number {
  let hit = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) hit++;
  return pred.length ? hit / pred.length : 0;
}

/**
 * Both sides' logits lie on the same quantization grid, so their differences are whole steps up to
 * float32 error in (a - b) / step (about 1e-5 steps for logits near 30). A slack of 1e-3 steps
 * keeps "exactly 2 steps" within a 2-step tolerance; 1e-6 did not, and failed a real export.
 */
const STEP_SLACK = 1e-3;

export interface LogitComparison {
  images: number;
  /** Share of rows where both argmaxes agree. */
  agreement: number;
  /** max |a - b| / step over every logit. */
  maxLogitDiffSteps: number;
  /** Rows whose logits differ by more than the tolerance (first few, for the error message). */
  worstRows: number[];
}

export function compareLogits(
  a: Float32Array,
  b: Float32Array,
  n: number,
  k: number,
  step: number,
  toleranceSteps = DEFAULT_MAX_LOGIT_DIFF_STEPS,
): LogitComparison {
  if (a.length !== n * k || b.length !== n * k) throw new RangeError(`expected ${n}x${k} logits, got ${a.length} and ${b.length}`);
  const pa = argmaxRows(a, n, k);
  const pb = argmaxRows(b, n, k);
  let agree = 0;
  let maxSteps = 0;
  const worst: number[] = [];
  for (let i = 0; i < n; i++) {
    if (pa[i] === pb[i]) agree++;
    let rowMax = 0;
    for (let j = 0; j < k; j++) rowMax = Math.max(rowMax, Math.abs(a[i * k + j] - b[i * k + j]) / step);
    if (rowMax > toleranceSteps + STEP_SLACK && worst.length < 5) worst.push(i);
    maxSteps = Math.max(maxSteps, rowMax);
  }
  return { images: n, agreement: n ? agree / n : 1, maxLogitDiffSteps: maxSteps, worstRows: worst };
}

/** Why a comparison fails the gate, or null when it passes. */
export function verificationFailure(c: LogitComparison, minAgreement = DEFAULT_MIN_AGREEMENT, maxSteps = DEFAULT_MAX_LOGIT_DIFF_STEPS): string | null {
  const reasons: string[] = [];
  if (c.agreement < minAgreement) {
    reasons.push(`top-1 agreement ${(c.agreement * 100).toFixed(2)}% on ${c.images} validation images is below ${(minAgreement * 100).toFixed(1)}%`);
  }
  if (c.maxLogitDiffSteps > maxSteps + STEP_SLACK) {
    reasons.push(`logits differ by up to ${c.maxLogitDiffSteps.toFixed(2)} quantization steps (allowed ${maxSteps}; e.g. images ${c.worstRows.join(', ')})`);
  }
  return reasons.length ? `int8 ONNX model does not reproduce the trained fake-quant model: ${reasons.join('; ')}` : null;
}

/** NHWC (training layout) -> NCHW (ONNX input layout) for n images. */
export function nhwcToNchw(x: Float32Array, n: number, size: number): Float32Array {
  const plane = size * size;
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) {
    const base = b * 3 * plane;
    for (let p = 0; p < plane; p++) {
      out[base + p] = x[base + p * 3]!;
      out[base + plane + p] = x[base + p * 3 + 1]!;
      out[base + 2 * plane + p] = x[base + p * 3 + 2]!;
    }
  }
  return out;
}

/**
 * An ORT session: all optimizations, one intra-op thread (what serving runs) unless told more. The
 * integer kernels give the same values on any number of threads.
 */
export class OnnxRunner {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(model: Uint8Array, threads = 1): Promise<OnnxRunner> {
    return new OnnxRunner(await ort.InferenceSession.create(model, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' }));
  }

  /** Logits [n, k] for NCHW input. */
  async run(nchw: Float32Array, n: number, size: number): Promise<Float32Array> {
    const feeds = { [this.session.inputNames[0]]: new ort.Tensor('float32', nchw, [n, 3, size, size]) };
    const out = await this.session.run(feeds);
    return Float32Array.from(out[this.session.outputNames[0]].data as Float32Array);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
