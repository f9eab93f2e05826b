// The trained int8 network as plain data: what the exporter turns into ONNX QDQ and what a pure
// reference implementation can run. The training engine produces it from a checkpoint
// (BN already folded, activation ranges frozen); `src/export` consumes it. Nothing here is tfjs.
//
// Layout conventions: activations are NCHW in the exported graph; conv weights are OIHW
// ([outChannels, inChannels / group, kh, kw]); dense weights are [out, in].
// Quantization: weights int8 symmetric per output channel (zero point 0, values in [-qmax, qmax]
// with qmax = 127 for 8-bit and 63 for 7-bit weights, see `weightQmax`); activations uint8
// asymmetric per tensor; biases float here, quantized to int32 by the exporter with
// scale = inputScale * weightScale[c].

/**
 * Bit width of the weight grid. 7 ("reduce_range") keeps every weight in [-63, 63]: on x86 CPUs
 * without VNNI, ONNX Runtime's u8s8 kernels add pairs of uint8 x int8 products in saturating int16
 * (vpmaddubsw), and 2 * 255 * 63 = 32130 fits where 2 * 255 * 127 = 64770 does not.
 */
export type WeightBits = 7 | 8;

/** Largest weight magnitude on the symmetric grid: 127 for 8 bits, 63 for 7. */
export function weightQmax(bits: WeightBits): number {
  return 2 ** (bits - 1) - 1;
}

/** uint8 asymmetric: real = scale * (q - zeroPoint), q in [0, 255]. */
export interface ActQuant {
  scale: number;
  zeroPoint: number;
}

interface NodeBase {
  /** Unique node name (e.g. 'block3/expand'). */
  name: string;
  /** Name of the tensor this node writes. Every tensor is quantized with `outQuant`. */
  output: string;
  outQuant: ActQuant;
}

export interface ConvNode extends NodeBase {
  op: 'conv';
  input: string;
  kernel: [number, number];
  strides: [number, number];
  /** Explicit pads [top, left, bottom, right] (TF 'same' padding is asymmetric at stride 2). */
  pads: [number, number, number, number];
  /** 1 for a normal conv, inChannels for depthwise. */
  group: number;
  inChannels: number;
  outChannels: number;
  /** OIHW int8 values in [-qmax, qmax] (see QuantGraph.weightBits). */
  weightInt8: Int8Array;
  /** Per output channel. */
  weightScale: Float32Array;
  /** Float bias (BN folded), per output channel. */
  bias: Float32Array;
  /** 'relu6' fuses ReLU6 before the output quantization; its range lies inside [0, 6]. */
  activation: 'relu6' | 'none';
}

/** Kernel, strides, pads and output size of a conv node on an h x w input, with its channels per group (NCHW references). */
export function convGeometry(node: ConvNode, h: number, w: number) {
  const [kh, kw] = node.kernel;
  const [sh, sw] = node.strides;
  const [pt, pl, pb, pr] = node.pads;
  return {
    kh,
    kw,
    sh,
    sw,
    pt,
    pl,
    oh: Math.floor((h + pt + pb - kh) / sh) + 1,
    ow: Math.floor((w + pl + pr - kw) / sw) + 1,
    oc: node.outChannels,
    icpg: node.inChannels / node.group,
    ocpg: node.outChannels / node.group,
  };
}

export interface AddNode extends NodeBase {
  op: 'add';
  inputs: [string, string];
}

export interface GlobalAvgPoolNode extends NodeBase {
  op: 'globalAvgPool';
  input: string;
}

export interface DenseNode extends NodeBase {
  op: 'dense';
  input: string;
  inFeatures: number;
  outFeatures: number;
  /** [out, in] int8 values in [-qmax, qmax] (see QuantGraph.weightBits). */
  weightInt8: Int8Array;
  weightScale: Float32Array;
  bias: Float32Array;
}

export type QuantNode = ConvNode | AddNode | GlobalAvgPoolNode | DenseNode;

export interface QuantGraph {
  inputSize: number;
  numClasses: number;
  classes: string[];
  /**
   * The weight grid the model was trained on (default 8). 7-bit weights are stored as int8 and are
   * exact in every ORT kernel; 8-bit ones may need uint8 storage on CPUs without VNNI.
   */
  weightBits?: WeightBits;
  /** Applied by the caller to RGB in [0, 1] before the graph: (x - mean) / std, per channel. */
  normalization: { mean: [number, number, number]; std: [number, number, number] };
  /** Input tensor name and the quantization of the normalized input. Shape [N, 3, inputSize, inputSize]. */
  input: { name: string; quant: ActQuant };
  /** Topologically ordered. */
  nodes: QuantNode[];
  /** The logits tensor (quantized by the last node's outQuant, dequantized as the graph output). */
  output: string;
}

/** Adding and subtracting 1.5 * 2^52 rounds a double to an integer, ties to even (|v| < 2^51). */
export const ROUND_MAGIC = 6755399441055744;

/**
 * Round half to even, then clamp to the integers [lo, hi]: for per-element loops. Math.round's
 * tie fix-up branches on the value, and on real activations those branches mispredict (QLinearAdd
 * took 17.5 ns an element with it, 4 on patterned data). Past 2^51 the rounding may be off by one
 * but the clamp still picks the right bound; a zero comes out +0; NaN stays NaN.
 */
export function roundClamp(v: number, lo: number, hi: number): number {
  const r = v + ROUND_MAGIC - ROUND_MAGIC;
  return r < lo ? lo : r > hi ? hi : r;
}

/** Round half to even: what tf.round, numpy and ONNX QuantizeLinear (std::nearbyint) do. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  // Math.round sends exact .5 ties up; move them to the even neighbour. (r & 1 is r's parity for
  // any integer below 2^53, and no double from 2^52 up has a fraction.) No fmod: this runs per
  // element in the int8 graph's kernels.
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

// The int32 bias exactly as the exported file stores it (and ONNX Runtime reads it). The exporter
// writes it and the tfjs int8 runner uses it, so both sides see the same integers.
const INT32_MAX = 2147483647;

/** Bias scale per output channel, as float32 exactly as ORT sees it: fround(sIn * sW[c]). */
export function biasScales(inputScale: number, weightScale: Float32Array): Float32Array {
  const out = new Float32Array(weightScale.length);
  const sIn = Math.fround(inputScale);
  for (let c = 0; c < out.length; c++) out[c] = Math.fround(sIn * weightScale[c]);
  return out;
}

/** int32 bias: round(b / (sIn * sW[c])), saturated (a saturating bias would mean a broken range). */
export function quantizeBias(bias: Float32Array, scales: Float32Array): Int32Array {
  const out = new Int32Array(bias.length);
  for (let c = 0; c < bias.length; c++) {
    const s = scales[c];
    const q = s > 0 ? Math.round(bias[c] / s) : 0;
    out[c] = Math.max(-INT32_MAX, Math.min(INT32_MAX, q));
  }
  return out;
}
