// The three QAT primitives the model is built from, swappable for fused implementations.
// The stock versions (plain tfjs ops, here and in fake-quant.ts) work on every backend and are the
// reference the unit tests check by hand. The wasm-training module (src/ml/backends/wasm-training,
// loaded dynamically by backend.ts) provides the same ops with fused kernels and gradients for
// 'wasm' and 'cpu'; backend.ts installs them when that module loads. Same semantics either way:
//   fakeQuantAct:    clip(round(x / scale), -zp, 255 - zp) * scale, STE gradient zero outside;
//   fakeQuantRelu6:  fakeQuantAct(relu6(x), scale, 0), gradient of that composite;
//   fakeQuantWeight: per-channel symmetric, scale max|w| / qmax (127 or 63), identity gradient;
//   batchNormTrain:  BN with biased batch statistics over all axes but the last;
//   range:           the smallest and largest element, as numbers (activation-range observers).
import { tf } from './tf.js';
import { fakeQuantAct, fakeQuantWeight } from './fake-quant.js';

export interface BatchNormTrainResult {
  y: tf.Tensor;
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
}

export interface QatOps {
  fakeQuantAct(x: tf.Tensor, scale: number, zeroPoint: number): tf.Tensor;
  /** A ReLU6 output's fake quant on a grid inside [0, 6]: fused implementations skip the ReLU6. */
  fakeQuantRelu6(x: tf.Tensor, scale: number): tf.Tensor;
  /** `qmax` is required so an implementation that ignored it could not silently train on 127. */
  fakeQuantWeight(w: tf.Tensor, channelAxis: number, qmax: number): tf.Tensor;
  batchNormTrain(z: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): BatchNormTrainResult;
  range(x: tf.Tensor): { min: number; max: number };
}

function stockBatchNormTrain(z: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): BatchNormTrainResult {
  // Statistics over N*H*W as one axis: a single-axis reduction is cheaper on every backend.
  const c = z.shape[z.shape.length - 1];
  const flat = tf.reshape(z, [-1, c]);
  const mean = tf.mean<tf.Tensor1D>(flat, 0);
  const variance = tf.mean<tf.Tensor1D>(tf.square(tf.sub(flat, mean)), 0);
  const k = tf.mul(gamma, tf.rsqrt(tf.add(variance, epsilon)));
  const y = tf.add(tf.mul(z, k), tf.sub(beta, tf.mul(mean, k)));
  return { y, mean, variance };
}

export const STOCK_QAT_OPS: QatOps = {
  fakeQuantAct: (x, scale, zeroPoint) => fakeQuantAct(x, { scale, zeroPoint }),
  fakeQuantRelu6: (x, scale) => fakeQuantAct(tf.relu6(x), { scale, zeroPoint: 0 }),
  fakeQuantWeight,
  batchNormTrain: stockBatchNormTrain,
  range: (x) => tf.tidy(() => ({ min: tf.min(x).dataSync()[0], max: tf.max(x).dataSync()[0] })),
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
