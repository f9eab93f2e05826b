// QAT training ops with fused kernels and their own gradients. Backend-agnostic: on 'wasm' and
// 'cpu' they run the fused kernels from qat-kernels.ts (registered by registerQatOps, which
// registerWasmTrainingKernels also calls); on any other backend, or if the kernels are not
// registered, they compute the same values with stock tfjs ops.
//
// What the engine should call (drop-in for the current stock formulations):
//   batchNormAct(z, gamma, beta, eps, pick) -> { y, mean, variance } (src/ml/conv-bn-fold.ts)
//   fakeQuantAct(x, scale, zeroPoint)      (src/ml/fake-quant.ts fakeQuantAct)
//   fakeQuantRelu6(x, scale)               = fakeQuantAct(relu6(x), scale, 0), one kernel each way
//   fakeQuantWeight(w, channelAxis, qmax)  (src/ml/fake-quant.ts fakeQuantWeight)
//   range(x)                               -> { min, max }  (the activation-range observers)
//   scaleShiftAct(z, k, b, act)            act(z * k + b), inference (BN with running statistics)
//   requantize(acc, bias, multiplier, zp, lo, hi)  (the int8 graph's, src/ml/int8-graph-runner.ts)
//   qlinearAdd(a, aQuant, b, bQuant, outQuant)     (the int8 graph's residual adds)
import * as tf from '@tensorflow/tfjs-core';
import {
  BN_ACT,
  BN_ACT_GRAD,
  BN_STATS,
  FAKE_QUANT,
  FAKE_QUANT_PER_CHANNEL,
  qatCpuKernelConfigs,
  qatGradConfigs,
  QLINEAR_ADD,
  relu6GradConfig,
  REQUANTIZE,
} from './qat-kernels.js';
import { assertCheckedTfjsVersion } from './version.js';
import { simdRange, simdSgdUpdate } from './simd.js';
import type { WasmBackendLike } from './heap.js';
import { STOCK_QAT_OPS, type BatchNormActResult, type BnAct, type BnActPicker } from '../../qat-ops.js';
import type { BnActAttrs } from './qat-math.js';
import type { ActQuant } from '../../quant-graph.js';
import type { SgdKernel } from '../../optimizer.js';

let registered = false;

/**
 * Registers the fused ops' gradients and their cpu kernels (the wasm ones come with
 * registerWasmTrainingKernels). Idempotent; on an unchecked tfjs version it registers nothing
 * and the ops use stock tfjs.
 */
export function registerQatOps(): void {
  if (registered) return;
  registered = true;
  try {
    assertCheckedTfjsVersion();
  } catch {
    return;
  }
  for (const g of qatGradConfigs) if (tf.getGradient(g.kernelName) == null) tf.registerGradient(g);
  // Replaces the global Relu6 gradient; on backends without the fused kernel it defers to the one
  // registered before (or tfjs's formula when there was none).
  tf.registerGradient(relu6GradConfig(tf.getGradient('Relu6') ?? undefined));
  for (const k of qatCpuKernelConfigs()) if (tf.getKernel(k.kernelName, k.backendName) == null) tf.registerKernel(k);
}

function fused(kernelName: string): boolean {
  registerQatOps();
  return tf.getKernel(kernelName, tf.getBackend()) != null && tf.getGradient(kernelName) != null;
}

/** The BN_ACT attributes of an activation: ReLU6's clamp, the fake quant's grid (scale 0: none). */
function attrsOfAct(act: BnAct): BnActAttrs {
  const [clampLo, clampHi] = act.relu6 ? [0, 6] : [-Infinity, Infinity];
  if (!act.quant) return { clampLo, clampHi, scale: 0, qmin: 0, qmax: 0 };
  return { clampLo, clampHi, scale: act.quant.scale, qmin: -act.quant.zeroPoint, qmax: 255 - act.quant.zeroPoint };
}

/**
 * Batch norm with batch statistics over every axis but the last (channels-last), then the layer's
 * activation, in three kernels: QatBnStats (one read of z: the statistics, the fold k, b and the
 * range of the output, exchanged with the other threads of a split step in one go), QatBnAct (one
 * read of z, one write: y = act(z * k + b)) and, backward, QatBnActGrad (the activation's mask
 * recomputed from z, then batch norm's backward: two reads of dy and z, one write). The stock
 * formulation writes y, reads it for the range, and reads and writes it again for each of ReLU6 and
 * the fake quant, forward and backward. Gradients flow to z, gamma and beta; mean and variance are
 * returned as numbers (the running statistics) and not differentiated.
 */
export function batchNormAct(z: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number, pick: BnActPicker): BatchNormActResult {
  registerQatOps();
  const backend = tf.getBackend();
  if (z.dtype !== 'float32' || ![BN_STATS, BN_ACT, BN_ACT_GRAD].every((k) => tf.getKernel(k, backend) != null)) {
    return STOCK_QAT_OPS.batchNormAct(z, gamma, beta, epsilon, pick);
  }
  let mean: Float32Array = new Float32Array(0);
  let variance: Float32Array = new Float32Array(0);
  const op = tf.customGrad(((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const stats = tf.engine().runKernel<tf.Tensor[]>(BN_STATS, { x, gamma: g, beta: b }, { epsilon });
    const [m, v, k, bias, range] = stats;
    const [lo, hi] = range.dataSync();
    mean = m.dataSync() as Float32Array;
    variance = v.dataSync() as Float32Array;
    const attrs = attrsOfAct(pick({ min: lo, max: hi }));
    const y = tf.engine().runKernel<tf.Tensor>(BN_ACT, { x, k, b: bias }, { ...attrs });
    save([x, g, m, v, k, bias]);
    tf.dispose(stats);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sg, sm, sv, sk, sb] = saved;
      const ins = { dy, x: sx, gamma: sg, mean: sm, variance: sv, k: sk, b: sb };
      return tf.engine().runKernel<tf.Tensor[]>(BN_ACT_GRAD, ins, { ...attrs, epsilon });
    };
    return { value: y, gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const y = op(z, gamma, beta);
  return { y, mean, variance };
}

/**
 * batchNormAct without an activation, with mean and variance as tensors (not differentiated):
 * the shape of the stock formulation, for callers that compare the two.
 */
export function batchNormTrain(
  z: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
): { y: tf.Tensor; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const { y, mean, variance } = batchNormAct(z, gamma, beta, epsilon, () => ({ relu6: false, quant: null }));
  return { y, mean: tf.tensor1d(mean), variance: tf.tensor1d(variance) };
}

/**
 * Per-tensor uint8 fake quant, clip(round(x / scale), -zeroPoint, 255 - zeroPoint) * scale, with
 * the straight-through gradient: dy inside the representable range, 0 outside.
 */
export function fakeQuantAct(x: tf.Tensor, scale: number, zeroPoint: number): tf.Tensor {
  const attrs = { scale, qmin: -zeroPoint, qmax: 255 - zeroPoint };
  if (fused(FAKE_QUANT) && x.dtype === 'float32') {
    return tf.engine().runKernel<tf.Tensor>(FAKE_QUANT, { x }, attrs);
  }
  const op = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    save([input]);
    const value = tf.mul(tf.clipByValue(tf.round(tf.div(input, scale)), attrs.qmin, attrs.qmax), scale);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const inRange = tf.logicalAnd(tf.greaterEqual(saved[0], attrs.qmin * scale), tf.lessEqual(saved[0], attrs.qmax * scale));
      return tf.mul(dy, tf.cast(inRange, 'float32'));
    };
    return { value, gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x);
}

/**
 * fakeQuantAct(relu6(x), scale, 0) and its gradient without the ReLU6: on a grid inside [0, 6]
 * (zero point 0, 255 * scale <= 6, as actQParams makes for ReLU6 outputs) the fake quant's own
 * clamp does what ReLU6 would, so the ReLU6 tensor, its kernel and its gradient kernel go. The
 * gradient is the composite's, dy where 0 < x <= 255 * scale (fakeQuantGradBounds); values equal
 * the composite's (a zero may differ in sign).
 * Any other grid takes the two ops.
 */
export function fakeQuantRelu6(x: tf.Tensor, scale: number): tf.Tensor {
  if (fused(FAKE_QUANT) && x.dtype === 'float32' && Math.fround(255 * scale) <= 6) {
    return tf.engine().runKernel<tf.Tensor>(FAKE_QUANT, { x }, { scale, qmin: 0, qmax: 255, relu6: 1 });
  }
  return fakeQuantAct(tf.relu6(x), scale, 0);
}

/**
 * Per-channel symmetric int8 fake quant of a weight (scale = max|w| over the other axes / qmax;
 * qmax 127 for 8-bit weights, 63 for 7-bit), identity gradient. Fused when every axis after
 * `channelAxis` has size 1 (conv [kh,kw,in,out] with axis 3, depthwise [kh,kw,C,1] with axis 2,
 * dense [in,out] with axis 1).
 */
export function fakeQuantWeight(w: tf.Tensor, channelAxis: number, qmax = 127): tf.Tensor {
  const trailingOnes = w.shape.slice(channelAxis + 1).every((d) => d === 1);
  if (trailingOnes && fused(FAKE_QUANT_PER_CHANNEL) && w.dtype === 'float32') {
    const [y, scales] = tf.engine().runKernel<tf.Tensor[]>(FAKE_QUANT_PER_CHANNEL, { x: w }, { channels: w.shape[channelAxis], qmax });
    scales.dispose();
    return y;
  }
  const op = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    save([input]);
    const value = tf.tidy(() => {
      const axes = input.shape.map((_, i) => i).filter((i) => i !== channelAxis);
      const s = tf.div(tf.maximum(tf.max(tf.abs(input), axes), 1e-8 * 127), qmax);
      const sb = tf.reshape(
        s,
        input.shape.map((d, i) => (i === channelAxis ? d : 1)),
      );
      return tf.mul(tf.clipByValue(tf.round(tf.div(input, sb)), -qmax, qmax), sb);
    });
    return { value, gradFunc: (dy: tf.Tensor) => tf.clone(dy) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(w);
}

/**
 * The smallest and largest element, as numbers. On wasm they are read straight off the heap by the
 * SIMD module's min/max loops (the ones the Min and Max kernels run): no kernel dispatch and no
 * output tensors, which at 32 px cost more than the loops (one pair per quantization point and
 * step). Elsewhere tf.min and tf.max.
 */
export function range(x: tf.Tensor): { min: number; max: number } {
  if (tf.getBackend() === 'wasm' && x.dtype === 'float32') {
    const r = simdRange(tf.backend() as unknown as WasmBackendLike, x, x.size);
    if (r) return r;
  }
  return STOCK_QAT_OPS.range(x);
}

/**
 * act(z * k + b) per channel for inference (QatOps.scaleShiftAct): a layer's batch norm with its
 * running statistics and its activation, as one QatBnAct kernel on wasm and cpu instead of
 * multiply, add and the activation's kernel; the same values. No gradient: training takes
 * batchNormAct, or the stock ops with BN frozen.
 */
export function scaleShiftAct(z: tf.Tensor, k: tf.Tensor1D, b: tf.Tensor1D, act: BnAct): tf.Tensor {
  registerQatOps();
  if (tf.getKernel(BN_ACT, tf.getBackend()) != null && z.dtype === 'float32') {
    return tf.engine().runKernel<tf.Tensor>(BN_ACT, { x: z, k, b }, attrsOfAct(act) as unknown as tf.NamedAttrMap);
  }
  return STOCK_QAT_OPS.scaleShiftAct(z, k, b, act);
}

/**
 * The int8 graph's requantization of a convolution's integer sums (QatOps.requantize): one
 * QatRequantize kernel on wasm and cpu instead of the six stock ones, the same values. At 1.0@224
 * those six took 38% of the int8 graph's kernel time.
 */
export function requantize(acc: tf.Tensor, bias: tf.Tensor1D, multiplier: tf.Tensor1D, zeroPoint: number, lo: number, hi: number): tf.Tensor {
  registerQatOps();
  if (tf.getKernel(REQUANTIZE, tf.getBackend()) != null && acc.dtype === 'float32') {
    return tf.engine().runKernel<tf.Tensor>(REQUANTIZE, { x: acc, bias, multiplier }, { lo: lo - zeroPoint, hi: hi - zeroPoint });
  }
  return STOCK_QAT_OPS.requantize(acc, bias, multiplier, zeroPoint, lo, hi);
}

/**
 * The int8 graph's residual add (QatOps.qlinearAdd): one QatQLinearAdd kernel on wasm and cpu that
 * reads both inputs where they lie, instead of copying them to the host and the sum back (about 4
 * ms per image of the int8 graph's 22 at 1.0@224); the same values.
 */
export function qlinearAdd(a: tf.Tensor, aQuant: ActQuant, b: tf.Tensor, bQuant: ActQuant, outQuant: ActQuant): tf.Tensor {
  registerQatOps();
  if (tf.getKernel(QLINEAR_ADD, tf.getBackend()) != null && a.dtype === 'float32' && b.dtype === 'float32') {
    const attrs = {
      aScale: aQuant.scale,
      aZeroPoint: aQuant.zeroPoint,
      bScale: bQuant.scale,
      bZeroPoint: bQuant.zeroPoint,
      outScale: outQuant.scale,
      outZeroPoint: outQuant.zeroPoint,
    };
    return tf.engine().runKernel<tf.Tensor>(QLINEAR_ADD, { a, b }, attrs);
  }
  return STOCK_QAT_OPS.qlinearAdd(a, aQuant, b, bQuant, outQuant);
}

/** optimizer.ts sgdUpdate in the SIMD module, on wasm when every array is on its heap (useSgdKernel). */
export const sgdUpdateOnHeap: SgdKernel = (...args) => tf.getBackend() === 'wasm' && simdSgdUpdate(tf.backend() as unknown as WasmBackendLike, ...args);

/** The ops as one object (the shape bench/kernels.ts and the test model take). */
export const qatOps = {
  qlinearAdd,
  requantize,
  scaleShiftAct,
  fakeQuantAct,
  fakeQuantRelu6,
  fakeQuantWeight,
  batchNormAct,
  batchNormTrain,
  range,
};
