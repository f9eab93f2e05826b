// The three QAT primitives the model is built from, swappable for fused implementations.
// The stock versions (plain tfjs ops, here and in fake-quant.ts) work on every backend and are the
// reference the unit tests check by hand. The wasm-training module (src/ml/backends/wasm-training,
// loaded dynamically by backend.ts) provides the same ops with fused kernels and gradients for
// 'wasm' and 'cpu'; backend.ts installs them when that module loads. Same semantics either way:
//   fakeQuantAct:    clip(round(x / scale), -zp, 255 - zp) * scale, STE gradient zero outside;
//   fakeQuantRelu6:  fakeQuantAct(relu6(x), scale, 0), gradient of that composite;
//   fakeQuantWeight: per-channel symmetric, scale max|w| / qmax (127 or 63), identity gradient;
//   batchNormAct:    BN with biased batch statistics over all axes but the last, then the layer's
//                    activation (ReLU6 or none, then its fake quant or none), chosen by a callback
//                    that sees the whole batch's BN output range first (the range observers);
//   range:           the smallest and largest element, as numbers (activation-range observers);
//   scaleShiftAct:   act(z * k + b) per channel with k, b given (BN with running statistics), for
//                    inference only: no gradient;
//   requantize:      clip(round((acc + bias) * multiplier) + zp, lo, hi) - zp per channel, float32:
//                    the int8 graph's requantization of a convolution's integer sums (evaluation);
//   qlinearAdd:      ONNX Runtime's QLinearAdd on activations minus their zero points (the int8
//                    graph's residual adds), exactly (qlinear-add.ts): float32 tensor ops cannot.
import { tf } from './tf.js';
import { fakeQuantAct, fakeQuantWeight } from './fake-quant.js';
import { activeCollective } from './data-parallel/step-collective.js';
import { qlinearAddCentered } from './qlinear-add.js';
import type { ActQuant } from './quant-graph.js';

export interface Range {
  min: number;
  max: number;
}

/** The activation after a batch norm: ReLU6 or none, then the activation's fake quant or none. */
export interface BnAct {
  relu6: boolean;
  /** Zero point 0 after ReLU6 (actQParams). */
  quant: { scale: number; zeroPoint: number } | null;
}

/**
 * Picks the activation once the range of the BN output over the whole batch is known (null when
 * it was not measured); the activation-range observers update there, before their fake quant.
 */
export type BnActPicker = (range: Range | null) => BnAct;

export interface BatchNormActResult {
  /** act(gamma * (z - mean) / sqrt(variance + eps) + beta) */
  y: tf.Tensor;
  /** Batch mean and biased variance per channel (for the running statistics; not differentiated). */
  mean: Float32Array;
  variance: Float32Array;
}

export interface QatOps {
  fakeQuantAct(x: tf.Tensor, scale: number, zeroPoint: number): tf.Tensor;
  /** A ReLU6 output's fake quant on a grid inside [0, 6]: fused implementations skip the ReLU6. */
  fakeQuantRelu6(x: tf.Tensor, scale: number): tf.Tensor;
  /** `qmax` is required so an implementation that ignored it could not silently train on 127. */
  fakeQuantWeight(w: tf.Tensor, channelAxis: number, qmax: number): tf.Tensor;
  batchNormAct(z: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number, pick: BnActPicker): BatchNormActResult;
  range(x: tf.Tensor): Range;
  /** act(z * k + b), k and b per channel (channels last), for inference: no gradient is registered. */
  scaleShiftAct(z: tf.Tensor, k: tf.Tensor1D, b: tf.Tensor1D, act: BnAct): tf.Tensor;
  requantize(acc: tf.Tensor, bias: tf.Tensor1D, multiplier: tf.Tensor1D, zeroPoint: number, lo: number, hi: number): tf.Tensor;
  /** a and b (same shape) hold q - zeroPoint of their quantizations; so does the result, of outQuant's. */
  qlinearAdd(a: tf.Tensor, aQuant: ActQuant, b: tf.Tensor, bQuant: ActQuant, outQuant: ActQuant): tf.Tensor;
}

/** BN with batch statistics in stock tfjs ops: y, mean and variance as tensors. */
function stockBatchNormTrain(z: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): { y: tf.Tensor; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  // Statistics over N*H*W as one axis: a single-axis reduction is cheaper on every backend.
  const c = z.shape[z.shape.length - 1];
  const flat = tf.reshape(z, [-1, c]);
  const mean = tf.mean<tf.Tensor1D>(flat, 0);
  const variance = tf.mean<tf.Tensor1D>(tf.square(tf.sub(flat, mean)), 0);
  const k = tf.mul(gamma, tf.rsqrt(tf.add(variance, epsilon)));
  const y = tf.add(tf.mul(z, k), tf.sub(beta, tf.mul(mean, k)));
  return { y, mean, variance };
}

/** The range of x over the whole batch (every thread's rows when the step is split). */
export function wholeBatchRange(x: tf.Tensor): Range {
  const r = qatOps().range(x);
  return activeCollective()?.minMax(r.min, r.max) ?? r;
}

/** The activation `act` applied to y with the active ops. */
export function activate(y: tf.Tensor, act: BnAct): tf.Tensor {
  const ops = qatOps();
  if (act.quant) return act.relu6 ? ops.fakeQuantRelu6(y, act.quant.scale) : ops.fakeQuantAct(y, act.quant.scale, act.quant.zeroPoint);
  return act.relu6 ? tf.relu6(y) : y;
}

export const STOCK_QAT_OPS: QatOps = {
  fakeQuantAct: (x, scale, zeroPoint) => fakeQuantAct(x, { scale, zeroPoint }),
  fakeQuantRelu6: (x, scale) => fakeQuantAct(tf.relu6(x), { scale, zeroPoint: 0 }),
  fakeQuantWeight,
  batchNormAct: (z, gamma, beta, epsilon, pick) => {
    const { y, mean, variance } = stockBatchNormTrain(z, gamma, beta, epsilon);
    return { y: activate(y, pick(wholeBatchRange(y))), mean: mean.dataSync() as Float32Array, variance: variance.dataSync() as Float32Array };
  },
  range: (x) => tf.tidy(() => ({ min: tf.min(x).dataSync()[0], max: tf.max(x).dataSync()[0] })),
  scaleShiftAct: (z, k, b, act) => activate(tf.add(tf.mul(z, k), b), act),
  // Round half to even (tf.round), as ORT's QLinear kernels requantize.
  requantize: (acc, bias, multiplier, zeroPoint, lo, hi) =>
    tf.tidy(() => tf.sub(tf.clipByValue(tf.add(tf.round(tf.mul(tf.add(acc, bias), multiplier)), zeroPoint), lo, hi), zeroPoint)),
  // On the host: the exact arithmetic has no tfjs op.
  qlinearAdd: (a, aQuant, b, bQuant, outQuant) => {
    const out = qlinearAddCentered(a.dataSync() as Float32Array, aQuant, b.dataSync() as Float32Array, bQuant, outQuant, new Float32Array(a.size));
    return tf.tensor(out, a.shape);
  },
};

let active: QatOps = STOCK_QAT_OPS;
let activeName = 'stock';

export function qatOps(): QatOps {
  return active;
}

export function qatOpsName(): string {
  return activeName;
}

/** Installs fused ops (null: back to the stock ones). */
export function useQatOps(ops: QatOps | null, name = 'fused'): void {
  active = ops ?? STOCK_QAT_OPS;
  activeName = ops ? name : 'stock';
}
