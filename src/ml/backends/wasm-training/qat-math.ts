// Fused QAT arithmetic on flat Float32Arrays: batch-norm training forward/backward and fake
// quantization. Pure functions, shared by the wasm and cpu kernels. Channel-last layout: element i
// belongs to channel i % C. Per-channel reductions accumulate in float64; per-element arithmetic
// follows the float32 order of the stock tfjs formulation so results agree with it.

import type { ChannelStats, StepCollective } from '../../data-parallel/step-collective.js';
import { ROUND_MAGIC, roundClamp, roundHalfEven } from '../../quant-graph.js';

const f = Math.fround;

/** What a training batch norm yields besides its output: outputs of the QatBnStats kernel. */
export interface BnStatsOut {
  mean: Float32Array;
  /** Biased (divide by the rows) batch variance. */
  variance: Float32Array;
  /** The fold: y = x * k + b per channel, k = gamma / sqrt(variance + eps), b = beta - mean * k. */
  k: Float32Array;
  b: Float32Array;
  /** [min, max] of y over the whole batch: the layer output's activation range. */
  range: Float32Array;
}

/**
 * Finishes a training batch norm's statistics from this rank's (with a collective: combined with
 * every other rank's in one exchange, so they are the whole batch's): mean, variance, the fold
 * k, b, and the range of y. The range follows from the per-channel input extremes without reading
 * y: y = fl(fl(x * k) + b) is monotone in x, so a channel's extremes are those of its two ends.
 */
export function finishBnStats(
  local: ChannelStats,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  eps: number,
  out: BnStatsOut,
  coll: StepCollective | null,
): void {
  const whole = coll ? coll.bnMoments(local) : local;
  const epsF = f(eps);
  let lo = Infinity;
  let hi = -Infinity;
  for (let j = 0; j < gamma.length; j++) {
    out.mean[j] = whole.mean[j];
    out.variance[j] = whole.m2[j] / whole.rows;
    const k = (out.k[j] = f(gamma[j] * f(1 / Math.sqrt(f(out.variance[j] + epsF)))));
    const b = (out.b[j] = f(beta[j] - f(out.mean[j] * k)));
    const y0 = f(f(whole.min[j] * k) + b);
    const y1 = f(f(whole.max[j] * k) + b);
    // Math.min/max propagate NaN, as the Min and Max kernels do.
    lo = Math.min(lo, y0, y1);
    hi = Math.max(hi, y0, y1);
  }
  out.range[0] = lo;
  out.range[1] = hi;
}

/** A training batch norm's statistics over all rows of x ([rows, C] flattened): see finishBnStats. */
export function bnStats(x: Float32Array, gamma: Float32Array, beta: Float32Array, eps: number, out: BnStatsOut, coll: StepCollective | null = null): void {
  const c = gamma.length;
  const rows = x.length / c;
  const sum = new Float64Array(c);
  const min = new Float32Array(c).fill(Infinity);
  const max = new Float32Array(c).fill(-Infinity);
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) {
      const v = x[i + j];
      sum[j] += v;
      min[j] = Math.min(min[j], v);
      max[j] = Math.max(max[j], v);
    }
  }
  const mean = new Float64Array(c);
  for (let j = 0; j < c; j++) mean[j] = sum[j] / rows;
  // Second pass on centred values: no cancellation for channels with a large mean.
  const m2 = new Float64Array(c);
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) {
      const d = x[i + j] - mean[j];
      m2[j] += d * d;
    }
  }
  finishBnStats({ rows, mean, m2, min, max }, gamma, beta, eps, out, coll);
}

/**
 * The activation fused after a training batch norm, as kernel attributes: y = x * k + b is clamped
 * to [clampLo, clampHi] (ReLU6: [0, 6]; none: [-inf, inf]), then, when scale > 0, fake-quantized:
 * clip(round(v / scale), qmin, qmax) * scale.
 */
export interface BnActAttrs {
  clampLo: number;
  clampHi: number;
  scale: number;
  qmin: number;
  qmax: number;
}

/** y = act(fl(fl(x * k) + b)) per element (BnActAttrs), the order the SIMD module rounds in. */
export function bnActApply(x: Float32Array, k: Float32Array, b: Float32Array, a: BnActAttrs, y: Float32Array): void {
  const c = k.length;
  const s = f(a.scale);
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) {
      const v = Math.min(Math.max(f(f(x[i + j] * k[j]) + b[j]), a.clampLo), a.clampHi);
      y[i + j] = s > 0 ? quantizeOne(v, s, a.qmin, a.qmax) * s : v;
    }
  }
}

/**
 * [lo, hi]: where the activation passes its gradient back, on y. The composite's: ReLU6 passes
 * 0 < y <= 6, the fake quant qmin*scale <= v <= qmax*scale (straight-through); after ReLU6
 * (zero point 0) both hold for 0 < y <= min(6, qmax*scale). No activation: everywhere.
 */
export function bnActGradBounds(a: BnActAttrs): [number, number] {
  const relu6 = a.clampLo === 0;
  if (a.scale <= 0) return relu6 ? [MIN_POSITIVE_F32, a.clampHi] : [-Infinity, Infinity];
  const [lo, hi] = fakeQuantGradBounds(a.scale, a.qmin, a.qmax, relu6);
  return [lo, Math.min(a.clampHi, hi)];
}

/**
 * Per-channel coefficients of batch norm's backward pass, dx = a * g + bc * (x - mean) + d, from
 * the whole batch's sums of g and g * (x - mean); dGamma and dBeta from this rank's own sums (with
 * a batch split over threads the parameter gradients are summed over ranks afterwards, with all
 * the others).
 */
export function bnBackwardCoefficients(
  own: { sDy: Float64Array; sDyXc: Float64Array },
  whole: { rows: number; sDy: Float64Array; sDyXc: Float64Array },
  gamma: ArrayLike<number>,
  variance: ArrayLike<number>,
  eps: number,
  out: { a: Float32Array; bc: Float32Array; d: Float32Array; dGamma: Float32Array; dBeta: Float32Array },
): void {
  const rows = whole.rows;
  for (let j = 0; j < gamma.length; j++) {
    const rstd = 1 / Math.sqrt(variance[j] + eps);
    out.dGamma[j] = own.sDyXc[j] * rstd;
    out.dBeta[j] = own.sDy[j];
    out.a[j] = gamma[j] * rstd;
    out.bc[j] = (-gamma[j] * rstd * rstd * whole.sDyXc[j] * rstd) / rows;
    out.d[j] = (-gamma[j] * rstd * whole.sDy[j]) / rows;
  }
}

/**
 * Gradient of bnActApply(bnStats(x)) with respect to x, gamma and beta (the statistics are not
 * differentiated as outputs: they feed the running statistics only). g = dy where lo <= y <= hi
 * (bnActGradBounds; y recomputed from x, k, b as bnActApply did), then batch norm's backward.
 * With a collective, dx uses the whole batch's sums.
 */
export function bnActBackward(
  dy: Float32Array,
  x: Float32Array,
  gamma: Float32Array,
  stats: { mean: Float32Array; variance: Float32Array; k: Float32Array; b: Float32Array },
  eps: number,
  lo: number,
  hi: number,
  dx: Float32Array,
  dGamma: Float32Array,
  dBeta: Float32Array,
  coll: StepCollective | null = null,
): void {
  const { mean, k, b } = stats;
  const c = gamma.length;
  const localRows = x.length / c;
  const g = new Float32Array(dy.length);
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) {
      const y = f(f(x[i + j] * k[j]) + b[j]);
      g[i + j] = y < lo || y > hi ? 0 : dy[i + j];
    }
  }
  const sDy = new Float64Array(c);
  const sDyXc = new Float64Array(c);
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) {
      sDy[j] += g[i + j];
      sDyXc[j] += g[i + j] * (x[i + j] - mean[j]);
    }
  }
  const own = { sDy, sDyXc };
  const whole = coll ? coll.bnGradSums(localRows, sDy, sDyXc) : { rows: localRows, ...own };
  const co = { a: new Float32Array(c), bc: new Float32Array(c), d: new Float32Array(c), dGamma, dBeta };
  bnBackwardCoefficients(own, whole, gamma, stats.variance, eps, co);
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) dx[i + j] = co.a[j] * g[i + j] + co.bc[j] * (x[i + j] - mean[j]) + co.d[j];
  }
}

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

/**
 * The int8 graph's requantization of a convolution's integer sums x (int8-graph-runner.ts), per
 * channel along the last axis: clamp(round((x + bias) * multiplier), lo, hi) in float32, round half
 * to even, where lo and hi are the output's bounds minus its zero point. The same values as the
 * composite add, multiply, round, + zero point, clip, - zero point, which never gives -0.
 */
export function requantizeChannels(x: Float32Array, bias: Float32Array, mult: Float32Array, lo: number, hi: number, y: Float32Array): void {
  const c = bias.length;
  for (let i = 0; i < x.length; i += c) {
    for (let j = 0; j < c; j++) {
      y[i + j] = roundClamp(f(f(x[i + j] + bias[j]) * mult[j]), lo, hi) + 0;
    }
  }
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
