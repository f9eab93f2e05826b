// Conv + batch norm with the BN folded into the conv, as trained for int8 (Jacob et al. 2018 §3.2,
// TFMOT, MindSpore Conv2dBnFoldQuant).
//
// The folded layer is  y = conv(x, W * k) + (beta - mu * k),  k = gamma / sqrt(var + eps)  (per
// output channel), and the weights that get fake-quantized are the folded weights W * k.
//
// Why one convolution suffices. The usual training graph runs the conv twice: once with the raw W
// to get batch statistics, once with the quantized folded weights. MindSpore's "OneConv" variant
// folds with the running std and rescales by sigma_run / sigma_batch afterwards. We go one step
// further, on an exact identity: per-output-channel *symmetric min/max* quantization commutes with
// per-channel scaling,  fq(W * k) = fq(W) * k  for every k (the channel's scale becomes
// max|W*k|/qmax = |k| * max|W|/qmax and the integers round(W/s) are unchanged; the sign of k flips
// both). Hence
//     conv(x, fq(W * k)) = conv(x, fq(W)) * k,
// so we run ONE conv with fq(W), take batch statistics of its output z (as plain BN would), and
// apply k and the bias per channel: conv-sized cost once, everything else per-channel. The int8
// weights exported are round(W / s) with scale s * |k| (sign folded in), i.e. exactly the grid
// trained on.
//
// Zero gamma: nothing here divides by gamma (PyTorch 1.13's ConvBn QAT divides the conv output by
// the folded scale to undo it and gets NaN when gamma = 0). k = 0 just zeroes the channel, and
// sqrt(var + eps) >= sqrt(eps) keeps every division finite.
//
// Modes:
//   batch stats (training, before freezeBnAfterSteps): k uses the batch variance, the bias the batch
//     mean, gradients flow through the statistics as in ordinary BN; running stats are updated;
//   frozen / eval: k and the bias use the running statistics: the exported layer exactly.
import { tf } from './tf.js';
import { weightScales } from './fake-quant.js';
import { effectiveDecay } from './ema-range.js';
import { activate, qatOps, wholeBatchRange, type BnAct, type BnActPicker } from './qat-ops.js';
import { activeCollective } from './data-parallel/step-collective.js';
import { ownedF32 } from './tensor-memory.js';

const f = Math.fround;

/** Keras MobileNetV2's BN epsilon. */
export const BN_EPS = 1e-3;
/** Running-stat momentum (PyTorch's 0.1 update): short QAT runs need statistics that keep up. */
export const BN_MOMENTUM = 0.9;

/**
 * Running-stat momentum at 0-based training step `step`: the EMA warm-up rule of the activation
 * ranges (ema-range.ts) applied to BN. With a fixed 0.9 the running statistics of a short run
 * still hold 0.9^steps of their initial (0, 1): after the 8 steps of a one-epoch demo job 43% of
 * the eval-mode statistics were the initial values and validation accuracy sat at or below chance.
 */
export function bnMomentumAt(step: number): number {
  return effectiveDecay(BN_MOMENTUM, step);
}

const NO_ACTIVATION: BnAct = { relu6: false, quant: null };

export type ConvKind = 'conv' | 'dw';

export interface BnState {
  gamma: tf.Variable;
  beta: tf.Variable;
  runMean: tf.Variable;
  runVar: tf.Variable;
}

export interface FoldedConvOptions {
  kind: ConvKind;
  stride: number;
  /** Symmetric zero padding (k - 1) / 2: pads [p, p, p, p] in the exported graph. */
  pad: number;
  quantizeWeights: boolean;
  /** Weight grid [-qmax, qmax]: 127 (8-bit, the default) or 63 (7-bit), see quant-graph.ts weightQmax. */
  weightQmax?: number;
  /** Batch statistics (and running-stat updates) instead of the running statistics. */
  batchStats: boolean;
  /** Running-stat momentum for this step (default BN_MOMENTUM); see `bnMomentumAt`. */
  runningMomentum?: number;
  /**
   * Evaluation only: the scale of the (fake-quantized) input. The bias is then rounded to the
   * int32 grid inputScale * weightScale[c] exactly as the int8 graph stores it, so the eval model
   * and ONNX Runtime agree to the last step more often (bias rounding is otherwise the most
   * frequent source of one-step differences). Training keeps the float bias, as TFMOT does.
   */
  biasInputScale?: number;
  /** Measure the output's range (before the activation) for the observers: `act` receives it. */
  observeRange?: boolean;
  /** No gradient will be taken (evaluation): scale, shift and activation may be one kernel without one. */
  inference?: boolean;
}

/** Output-channel axis of a tfjs filter: [kh, kw, in, out] for conv, [kh, kw, C, 1] for depthwise. */
export function channelAxis(kind: ConvKind): number {
  return kind === 'conv' ? 3 : 2;
}

export function rawConv(x: tf.Tensor4D, w: tf.Tensor4D, kind: ConvKind, stride: number, pad: number): tf.Tensor4D {
  return kind === 'conv' ? tf.conv2d(x, w, stride, pad === 0 ? 'valid' : pad) : tf.depthwiseConv2d(x, w, stride, pad === 0 ? 'valid' : pad);
}

/**
 * The folded conv-BN layer followed by its activation, which `act` picks once the BN output's
 * range over the whole batch is known (measured when `observeRange`; null otherwise). When
 * `batchStats` is on it also updates the running statistics (assigned in place: tfjs variables
 * share the new tensor's buffer, so this is safe inside a gradient tape, as tfjs-layers'
 * BatchNormalization does).
 */
export function foldedConvBn(x: tf.Tensor4D, w: tf.Variable, bn: BnState, opts: FoldedConvOptions, act: BnActPicker = () => NO_ACTIVATION): tf.Tensor4D {
  const ops = qatOps();
  const qmax = opts.weightQmax ?? 127;
  const wq = (opts.quantizeWeights ? ops.fakeQuantWeight(w, channelAxis(opts.kind), qmax) : w) as tf.Tensor4D;
  const z = rawConv(x, wq, opts.kind, opts.stride, opts.pad);
  if (opts.batchStats) {
    // The statistics' range comes free with the fused op, so it is always passed on.
    const { y, mean, variance } = ops.batchNormAct(z, bn.gamma as tf.Tensor1D, bn.beta as tf.Tensor1D, BN_EPS, (r) => act(opts.observeRange ? r : null));
    // Rows behind the statistics: the whole batch's when it is split over threads.
    const count = (z.size / z.shape[3]) * (activeCollective()?.batchScale ?? 1);
    const unbiased = count > 1 ? count / (count - 1) : 1;
    updateRunningStats(bn, mean, variance, opts.runningMomentum ?? BN_MOMENTUM, unbiased);
    return y as tf.Tensor4D;
  }
  const k = tf.mul<tf.Tensor1D>(bn.gamma, tf.rsqrt(tf.add(bn.runVar, BN_EPS)));
  let bias = tf.sub<tf.Tensor1D>(bn.beta, tf.mul(bn.runMean, k));
  if (opts.biasInputScale !== undefined && opts.quantizeWeights) {
    // The exported weight scale is s * |k|, or s when k = 0 (see to-quant-graph.ts).
    const absK = tf.abs(k);
    const ws = tf.mul(weightScales(w, channelAxis(opts.kind), qmax), tf.where(tf.equal(absK, 0), tf.onesLike(absK), absK));
    bias = quantizeBias(bias, tf.mul(ws, opts.biasInputScale)) as tf.Tensor1D;
  }
  if (opts.inference && !opts.observeRange) return ops.scaleShiftAct(z, k, bias, act(null)) as tf.Tensor4D;
  const y = tf.add<tf.Tensor4D>(tf.mul(z, k), bias);
  return activate(y, act(opts.observeRange ? wholeBatchRange(y) : null)) as tf.Tensor4D;
}

/**
 * runMean = runMean*mom + mean*(1-mom), runVar = runVar*mom + variance*(1-mom)*unbiased. The
 * statistics are not trained, so they stay off the tape: written in place where the backend allows
 * (float32 rounding op for op as the tfjs ops below), else by copying the values into new tensors.
 */
function updateRunningStats(bn: BnState, batchMean: Float32Array, batchVar: Float32Array, mom: number, unbiased: number): void {
  const keep = f(mom);
  const mw = f(1 - mom);
  const vw = f((1 - mom) * unbiased);
  const rm = ownedF32(bn.runMean);
  const rv = ownedF32(bn.runVar);
  if (rm && rv) {
    for (let j = 0; j < rm.length; j++) {
      rm[j] = f(f(rm[j] * keep) + f(batchMean[j] * mw));
      rv[j] = f(f(rv[j] * keep) + f(batchVar[j] * vw));
    }
    return;
  }
  tf.tidy(() => {
    const m = tf.add(tf.mul(bn.runMean, mom), tf.mul(batchMean, 1 - mom));
    const v = tf.add(tf.mul(bn.runVar, mom), tf.mul(batchVar, (1 - mom) * unbiased));
    bn.runMean.assign(tf.tensor1d(m.dataSync() as Float32Array));
    bn.runVar.assign(tf.tensor1d(v.dataSync() as Float32Array));
  });
}

/** round(bias / accScale) * accScale: the int32 bias of the int8 graph, dequantized. */
export function quantizeBias(bias: tf.Tensor, accScale: tf.Tensor): tf.Tensor {
  return tf.mul(tf.round(tf.div(bias, accScale)), accScale);
}

/** Per-channel fold factor and bias from running statistics, for export and tests (JS values). */
export function foldFactors(bn: { gamma: Float32Array; beta: Float32Array; runMean: Float32Array; runVar: Float32Array }): {
  k: Float32Array;
  bias: Float32Array;
} {
  const n = bn.gamma.length;
  const k = new Float32Array(n);
  const bias = new Float32Array(n);
  for (let c = 0; c < n; c++) {
    // Same float32 order of operations as the tensor version above.
    const r = Math.fround(1 / Math.sqrt(Math.fround(bn.runVar[c] + Math.fround(BN_EPS))));
    k[c] = Math.fround(bn.gamma[c] * r);
    bias[c] = Math.fround(bn.beta[c] - Math.fround(bn.runMean[c] * k[c]));
  }
  return { k, bias };
}
