// Fake quantization: float in, float out, but every value lands on the grid the int8 graph will
// use. Gradients are straight-through (identity) inside the clamp range and zero outside it, as in
// Jacob et al. 2018 and TF's FakeQuantWithMinMaxVars.
//
// The formulas follow ONNX QuantizeLinear/DequantizeLinear exactly (round half to even of x/scale,
// then add the zero point, then clamp), so the exported graph reproduces these values bit for bit
// up to float rounding.
import { tf } from './tf.js';
import { roundHalfEven } from './quant-graph.js';

/** 8-bit weights: symmetric grid [-127, 127] (weightQmax(8)). */
const QMAX_8BIT = 127;

export { roundHalfEven };

/** tfjs types customGrad's callback with variadic inputs; ours take one tensor and the saver. */
type CustomGradFn = Parameters<typeof tf.customGrad>[0];

/** uint8 asymmetric quantization parameters: real = scale * (q - zeroPoint), q in [0, 255]. */
export interface ActQParams {
  scale: number;
  zeroPoint: number;
}

/** Smallest scale we allow: a tensor that never varied still gets a valid (tiny) grid. */
const MIN_SCALE = 1e-8;

/**
 * Range [min, max] -> uint8 params, "nudged" so that real 0 is exactly representable (zero padding
 * and ReLU outputs must quantize without error). The range is first widened to include 0.
 * `relu6`: the tensor is a ReLU6 output, so the grid is kept inside [0, 6] (zero point 0, top
 * 255 * scale <= 6), which lets ONNX Runtime fold the Clip into the quantization.
 * Values are float32 (Math.fround) because that is what the ONNX initializers store.
 */
export function actQParams(min: number, max: number, relu6 = false): ActQParams {
  if (relu6) {
    let scale = Math.fround(Math.max(Math.min(Math.max(max, 0), 6) / 255, MIN_SCALE));
    while (scale * 255 > 6) scale = prevFloat32(scale);
    return { scale, zeroPoint: 0 };
  }
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const scale = Math.fround(Math.max((hi - lo) / 255, MIN_SCALE));
  const zeroPoint = Math.min(255, Math.max(0, roundHalfEven(-lo / scale)));
  return { scale, zeroPoint };
}

/** The largest float32 below a positive float32. */
function prevFloat32(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer);
  u[0] = u[0] - 1;
  return f[0];
}

/** Pure-JS fake quant of one value (reference for tests and the int8 reference runner). */
export function fakeQuantValue(x: number, q: ActQParams): number {
  const qv = Math.min(255, Math.max(0, roundHalfEven(Math.fround(x / q.scale)) + q.zeroPoint));
  return (qv - q.zeroPoint) * q.scale;
}

/**
 * Per-tensor asymmetric fake quant. `scale` and `zeroPoint` are scalars (tensors or numbers).
 * Gradient: dy where x lies in the representable range [-zp*scale, (255-zp)*scale], else 0;
 * none for the parameters (they come from EMA statistics, not from gradients).
 */
export function fakeQuantAct(x: tf.Tensor, params: ActQParams): tf.Tensor {
  const { scale, zeroPoint } = params;
  const lo = -zeroPoint;
  const hi = 255 - zeroPoint;
  // Parameters are baked into the op as constants; customGrad only needs the saved input.
  const op = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    save([input]);
    const q = tf.clipByValue(tf.round(tf.div(input, scale)), lo, hi);
    return {
      value: tf.mul(q, scale),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs] = saved;
        const inRange = tf.logicalAnd(tf.greaterEqual(xs, lo * scale), tf.lessEqual(xs, hi * scale));
        return tf.mul(dy, tf.cast(inRange, 'float32'));
      },
    };
  }) as unknown as CustomGradFn);
  return op(x);
}

// The floor on max|w| is the same for every bit width (MIN_SCALE * 127, as the wasm kernel has it),
// so an all-zero channel gets scale floor / qmax on every backend.
const ABS_MAX_FLOOR = MIN_SCALE * QMAX_8BIT;

/**
 * Per-output-channel symmetric scale: max|w| over everything but the channel axis, / qmax
 * (127 for 8-bit weights, 63 for 7-bit). tfjs keeps the output channel last for conv2d
 * ([kh, kw, in, out]), depthwise ([kh, kw, channels, 1] -> channel axis 2) and dense ([in, out]).
 */
export function weightScales(w: tf.Tensor, channelAxis: number, qmax = QMAX_8BIT): tf.Tensor1D {
  return tf.tidy(() => {
    const axes = w.shape.map((_, i) => i).filter((i) => i !== channelAxis);
    const absMax = tf.max<tf.Tensor1D>(tf.abs(w), axes);
    return tf.div<tf.Tensor1D>(tf.maximum(absMax, ABS_MAX_FLOOR), qmax);
  });
}

/**
 * Per-channel symmetric fake quant of a weight tensor into [-qmax, qmax] * scale[c]. The range is
 * the tensor's own min/max, so nothing is ever clamped and the straight-through gradient is the
 * identity.
 */
export function fakeQuantWeight(w: tf.Tensor, channelAxis: number, qmax = QMAX_8BIT): tf.Tensor {
  const op = tf.customGrad(((input: tf.Tensor) => {
    const value = tf.tidy(() => {
      const s = weightScales(input, channelAxis, qmax);
      const bshape = input.shape.map((d, i) => (i === channelAxis ? d : 1));
      const sb = tf.reshape(s, bshape);
      return tf.mul(tf.clipByValue(tf.round(tf.div(input, sb)), -qmax, qmax), sb);
    });
    return { value, gradFunc: (dy: tf.Tensor) => tf.clone(dy) };
  }) as unknown as CustomGradFn);
  return op(w);
}

/** JS reference of the per-channel weight quantization: int8 values in [-qmax, qmax] and float32 scales. */
export function quantizeWeightsPerChannel(
  values: Float32Array,
  shape: number[],
  channelAxis: number,
  qmax = QMAX_8BIT,
): { int8: Int8Array; scales: Float32Array } {
  const channels = shape[channelAxis];
  const inner = shape.slice(channelAxis + 1).reduce((a, b) => a * b, 1);
  const absMax = new Float64Array(channels);
  for (let i = 0; i < values.length; i++) {
    const c = Math.floor(i / inner) % channels;
    const a = Math.abs(values[i]);
    if (a > absMax[c]) absMax[c] = a;
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    scales[c] = Math.fround(Math.max(absMax[c], ABS_MAX_FLOOR) / qmax);
  }
  const int8 = new Int8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const c = Math.floor(i / inner) % channels;
    const q = roundHalfEven(Math.fround(values[i] / scales[c]));
    int8[i] = Math.max(-qmax, Math.min(qmax, q));
  }
  return { int8, scales };
}
