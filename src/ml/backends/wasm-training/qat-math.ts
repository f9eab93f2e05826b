// Fused QAT arithmetic on flat Float32Arrays: batch-norm training forward/backward and fake
// quantization. Pure functions, shared by the wasm and cpu kernels. Channel-last layout: element i
// belongs to channel i % C. Per-channel reductions accumulate in float64; per-element arithmetic
// follows the float32 order of the stock tfjs formulation so results agree with it.

import type { StepCollective } from '../../data-parallel/step-collective.js';

const f = Math.fround;

/** Round half to even (tf.round, numpy, ONNX QuantizeLinear). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  // Math.round sends exact .5 ties up; move them to the even neighbour.
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

export interface BnForwardOut {
  mean: Float32Array;
  variance: Float32Array;
}

/**
 * Training batch norm over all rows of x ([rows, C] flattened): batch mean and biased variance per
 * channel, y = x * k + (beta - mean * k) with k = gamma / sqrt(variance + eps). With a
 * collective (a batch split over threads) the statistics are those of the whole batch.
 */
export function bnTrainForward(
  x: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  eps: number,
  y: Float32Array,
  mean: Float32Array,
  variance: Float32Array,
  coll: StepCollective | null = null,
): void {
  const c = gamma.length;
  const rows = x.length / c;
  const sum = new Float64Array(c);
  for (let i = 0; i < x.length; i += c) for (let j = 0; j < c; j++) sum[j] += x[i + j];
  const m = new Float64Array(c);
  for (let j = 0; j < c; j++) m[j] = sum[j] / rows;
  // Second pass on centred values: no cancellation for channels with a large mean.
  const sq = new Float64Array(c);
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) {
      const d = x[i + j] - m[j];
      sq[j] += d * d;
    }
  }
  const whole = coll ? coll.bnMoments(rows, m, sq) : { rows, mean: m, m2: sq };
  const k = new Float32Array(c);
  const b = new Float32Array(c);
  const epsF = f(eps);
  for (let j = 0; j < c; j++) {
    mean[j] = whole.mean[j];
    variance[j] = whole.m2[j] / whole.rows;
    k[j] = f(gamma[j] * f(1 / Math.sqrt(f(variance[j] + epsF))));
    b[j] = f(beta[j] - f(mean[j] * k[j]));
  }
  for (let i = 0; i < x.length; i += c) for (let j = 0; j < c; j++) y[i + j] = x[i + j] * k[j] + b[j];
}

/**
 * Gradient of bnTrainForward with respect to x, gamma and beta, including the gradients that
 * arrive at its mean and variance outputs (usually zero: they feed the running statistics).
 * With a collective, dx uses the whole batch's sums; dGamma and dBeta stay this rank's share (the
 * parameter gradients are summed over ranks afterwards, with all the others).
 */
export function bnTrainBackward(
  dy: Float32Array,
  x: Float32Array,
  gamma: Float32Array,
  mean: Float32Array,
  variance: Float32Array,
  dMean: Float32Array,
  dVariance: Float32Array,
  eps: number,
  dx: Float32Array,
  dGamma: Float32Array,
  dBeta: Float32Array,
  coll: StepCollective | null = null,
): void {
  const c = gamma.length;
  const localRows = x.length / c;
  const sDy = new Float64Array(c);
  const sDyXc = new Float64Array(c);
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) {
      const g = dy[i + j];
      sDy[j] += g;
      sDyXc[j] += g * (x[i + j] - mean[j]);
    }
  }
  const whole = coll ? coll.bnGradSums(localRows, sDy, sDyXc) : { rows: localRows, sDy, sDyXc };
  const rows = whole.rows;
  // dx = A*dy + B*(x - mean) + D per channel (standard BN backward, plus the statistic outputs).
  const a = new Float32Array(c);
  const bc = new Float32Array(c);
  const d = new Float32Array(c);
  const mf = new Float32Array(c);
  for (let j = 0; j < c; j++) {
    const rstd = 1 / Math.sqrt(variance[j] + eps);
    const dg = whole.sDyXc[j] * rstd;
    dGamma[j] = sDyXc[j] * rstd;
    dBeta[j] = sDy[j];
    a[j] = gamma[j] * rstd;
    bc[j] = (-gamma[j] * rstd * rstd * dg) / rows + (2 * dVariance[j]) / rows;
    d[j] = (-gamma[j] * rstd * whole.sDy[j]) / rows + dMean[j] / rows;
    mf[j] = mean[j];
  }
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) dx[i + j] = a[j] * dy[i + j] + bc[j] * (x[i + j] - mf[j]) + d[j];
  }
}

/** Adding and subtracting 1.5 * 2^52 rounds a double to an integer, ties to even (|v| < 2^51). */
const ROUND_MAGIC = 6755399441055744;

/**
 * Quantize one value: clip(round(x / s), qmin, qmax) with round half to even. Written without
 * data-dependent branches (branchy min/max is several times slower in these loops): the clamps use
 * max(a, 0) = (a + |a|) / 2, exact on integers. Non-finite quotients take the careful path.
 */
function quantizeOne(x: number, s: number, qmin: number, qmax: number): number {
  const r = f(x / s) + ROUND_MAGIC - ROUND_MAGIC;
  const a = r - qmin;
  const lo = qmin + (a + Math.abs(a)) * 0.5;
  const b = qmax - lo;
  const q = qmax - (b + Math.abs(b)) * 0.5;
  // NaN only when x / s was infinite or NaN (rare): clamp infinities as tf.clipByValue does.
  return q === q ? q : quantizeSlow(x, s, qmin, qmax);
}

function quantizeSlow(x: number, s: number, qmin: number, qmax: number): number {
  const v = f(x / s);
  if (v !== v) return v;
  return Math.min(Math.max(roundHalfEven(v), qmin), qmax);
}

/** The smallest positive float32 (a denormal): for a float32 x, x >= it exactly when x > 0. */
const MIN_POSITIVE_F32 = 2 ** -149;

/**
 * [lo, hi] where the fake quant's straight-through gradient passes: the grid's float range
 * [qmin*scale, qmax*scale]. After an elided ReLU6 (`relu6`, grid inside [0, 6]) the gradient is
 * that of FQ(relu6(x)): relu6's own (0 < x <= 6) times the grid's, i.e. 0 < x <= qmax*scale.
 */
export function fakeQuantGradBounds(scale: number, qmin: number, qmax: number, relu6: boolean): [number, number] {
  return [relu6 ? MIN_POSITIVE_F32 : f(qmin * scale), f(qmax * scale)];
}

/** Per-tensor fake quant: clip(round(x / scale), qmin, qmax) * scale (qmin = -zeroPoint...). */
export function fakeQuantForward(x: Float32Array, scale: number, qmin: number, qmax: number, y: Float32Array): void {
  const s = f(scale);
  for (let i = 0; i < x.length; i++) y[i] = quantizeOne(x[i], s, qmin, qmax) * s;
}

/** Straight-through gradient: dy where lo <= x <= hi, else 0 (dy * mask, as stock); see fakeQuantGradBounds. */
export function fakeQuantBackward(dy: Float32Array, x: Float32Array, lo: number, hi: number, dx: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    dx[i] = dy[i] * (+(v >= lo) * +(v <= hi));
  }
}

/**
 * Per-channel symmetric fake quant along the LAST axis of x ([..., C] flattened; the engine's
 * conv and dense weights keep the output channel last; depthwise [kh,kw,C,1] is C-last too once
 * its trailing 1 is dropped). scale[c] = max(max|x[.., c]|, 1e-8*127) / qmax (127 or 63).
 */
export function fakeQuantPerChannelForward(x: Float32Array, channels: number, qmax: number, y: Float32Array, scales: Float32Array): void {
  const absMax = new Float32Array(channels);
  for (let i = 0; i < x.length; i += channels) {
    for (let j = 0; j < channels; j++) {
      const a = Math.abs(x[i + j]);
      if (a > absMax[j]) absMax[j] = a;
    }
  }
  const floor = f(1e-8 * 127);
  for (let j = 0; j < channels; j++) scales[j] = f(Math.max(absMax[j], floor) / qmax);
  for (let i = 0; i < x.length; i += channels) {
    for (let j = 0; j < channels; j++) {
      const s = scales[j];
      y[i + j] = quantizeOne(x[i + j], s, -qmax, qmax) * s;
    }
  }
}

/** ReLU6 gradient, dy * (0 < x <= 6) as tfjs computes it (a NaN input gives NaN, as its Step does). */
export function relu6Backward(dy: Float32Array, x: Float32Array, dx: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    dx[i] = dy[i] * (+(v > 0) * +(v <= 6) + (v === v ? 0 : NaN));
  }
}
