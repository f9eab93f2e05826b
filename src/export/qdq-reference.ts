// A plain-JS interpreter of a QuantGraph with exactly the semantics the QDQ ONNX file states:
// activations fake-quantized to uint8 (round half to even, saturate), weights dequantized from int8
// per channel, biases from int32 at scale inputScale * weightScale[c]. It is slow and simple on
// purpose: tests compare onnxruntime's fused integer kernels against it, and calibration of
// synthetic graphs runs it with quantization off.
import { biasScales, quantizeBias, roundHalfEven, type ActQuant, type ConvNode, type QuantGraph } from '../ml/quant-graph.js';
import { qlinearAdd } from '../ml/qlinear-add.js';

export interface ReferenceOptions {
  /** Fake-quantize activations as the QDQ graph does (default true). Off: the float network. */
  quantize?: boolean;
  /** Called with every activation tensor (NCHW or [N, F]) before its quantization. */
  observe?: (tensor: string, data: Float32Array) => void;
}

interface Act {
  data: Float32Array;
  c: number;
  h: number;
  w: number;
}

/** In place: x -> scale * (clamp(round(x / scale) + zp, 0, 255) - zp), in float32 like ORT. */
export function fakeQuantize(data: Float32Array, quant: ActQuant): void {
  const scale = Math.fround(quant.scale);
  const zp = quant.zeroPoint;
  for (let i = 0; i < data.length; i++) {
    let q = roundHalfEven(Math.fround(data[i] / scale)) + zp;
    q = q < 0 ? 0 : q > 255 ? 255 : q;
    data[i] = (q - zp) * scale;
  }
}

function dequantWeights(q: Int8Array, scale: Float32Array): Float32Array {
  const out = new Float32Array(q.length);
  const per = q.length / scale.length;
  for (let i = 0; i < q.length; i++) out[i] = q[i] * scale[(i / per) | 0];
  return out;
}

function effectiveBias(bias: Float32Array, weightScale: Float32Array, inQuant: ActQuant, quantize: boolean): Float32Array {
  if (!quantize) return bias;
  const s = biasScales(inQuant.scale, weightScale);
  const q = quantizeBias(bias, s);
  const out = new Float32Array(bias.length);
  for (let c = 0; c < out.length; c++) out[c] = q[c] * s[c];
  return out;
}

function conv(x: Act, n: number, node: ConvNode, weights: Float32Array, bias: Float32Array): Act {
  const [kh, kw] = node.kernel;
  const [sh, sw] = node.strides;
  const [pt, pl, pb, pr] = node.pads;
  const oh = Math.floor((x.h + pt + pb - kh) / sh) + 1;
  const ow = Math.floor((x.w + pl + pr - kw) / sw) + 1;
  const oc = node.outChannels;
  const icpg = node.inChannels / node.group;
  const ocpg = oc / node.group;
  const out = new Float32Array(n * oc * oh * ow);
  const inPlane = x.h * x.w;
  const outPlane = oh * ow;
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < oc; o++) {
      const g = (o / ocpg) | 0;
      const dst = (b * oc + o) * outPlane;
      out.fill(bias[o], dst, dst + outPlane);
      for (let ci = 0; ci < icpg; ci++) {
        const src = (b * x.c + g * icpg + ci) * inPlane;
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const wv = weights[((o * icpg + ci) * kh + ky) * kw + kx];
            if (wv === 0) continue;
            for (let y = 0; y < oh; y++) {
              const iy = y * sh - pt + ky;
              if (iy < 0 || iy >= x.h) continue;
              const row = src + iy * x.w;
              const orow = dst + y * ow;
              for (let xx = 0; xx < ow; xx++) {
                const ix = xx * sw - pl + kx;
                if (ix < 0 || ix >= x.w) continue;
                out[orow + xx] += wv * x.data[row + ix];
              }
            }
          }
        }
      }
    }
  }
  return { data: out, c: oc, h: oh, w: ow };
}

/**
 * Runs the graph on `input` (NCHW float, already normalized, `n` images) and returns the logits
 * [n, numClasses] as the QDQ graph outputs them (dequantized).
 */
export function runQdqReference(graph: QuantGraph, input: Float32Array, n: number, options: ReferenceOptions = {}): Float32Array {
  const quantize = options.quantize ?? true;
  const size = graph.inputSize;
  if (input.length !== n * 3 * size * size) throw new Error(`input has ${input.length} values, expected ${n}x3x${size}x${size}`);
  const acts = new Map<string, Act>();
  const quants = new Map<string, ActQuant>();

  const store = (name: string, act: Act, quant: ActQuant): void => {
    options.observe?.(name, act.data);
    if (quantize) fakeQuantize(act.data, quant);
    acts.set(name, act);
    quants.set(name, quant);
  };
  const get = (name: string): Act => {
    const a = acts.get(name);
    if (!a) throw new Error(`tensor '${name}' read before it is written`);
    return a;
  };

  store(graph.input.name, { data: Float32Array.from(input), c: 3, h: size, w: size }, graph.input.quant);

  for (const node of graph.nodes) {
    switch (node.op) {
      case 'conv': {
        const x = get(node.input);
        const w = dequantWeights(node.weightInt8, node.weightScale);
        const bias = effectiveBias(node.bias, node.weightScale, quants.get(node.input)!, quantize);
        const y = conv(x, n, node, w, bias);
        if (node.activation === 'relu6') {
          const d = y.data;
          for (let i = 0; i < d.length; i++) d[i] = d[i] < 0 ? 0 : d[i] > 6 ? 6 : d[i];
        }
        store(node.output, y, node.outQuant);
        break;
      }
      case 'add': {
        const a = get(node.inputs[0]);
        const b = get(node.inputs[1]);
        const d = new Float32Array(a.data.length);
        for (let i = 0; i < d.length; i++) d[i] = a.data[i] + b.data[i];
        store(node.output, { data: d, c: a.c, h: a.h, w: a.w }, node.outQuant);
        break;
      }
      case 'globalAvgPool': {
        const x = get(node.input);
        const plane = x.h * x.w;
        const d = new Float32Array(n * x.c);
        for (let i = 0; i < d.length; i++) {
          let s = 0;
          for (let p = 0; p < plane; p++) s += x.data[i * plane + p];
          d[i] = s / plane;
        }
        store(node.output, { data: d, c: x.c, h: 1, w: 1 }, node.outQuant);
        break;
      }
      case 'dense': {
        const x = get(node.input);
        const w = dequantWeights(node.weightInt8, node.weightScale);
        const bias = effectiveBias(node.bias, node.weightScale, quants.get(node.input)!, quantize);
        const inF = node.inFeatures;
        const d = new Float32Array(n * node.outFeatures);
        for (let b = 0; b < n; b++) {
          for (let o = 0; o < node.outFeatures; o++) {
            let s = 0;
            for (let i = 0; i < inF; i++) s += w[o * inF + i] * x.data[b * inF + i];
            d[b * node.outFeatures + o] = s + bias[o];
          }
        }
        store(node.output, { data: d, c: node.outFeatures, h: 1, w: 1 }, node.outQuant);
        break;
      }
    }
  }
  return get(graph.output).data;
}

// ---------------------------------------------------------------------------------------------
// Integer emulation: what onnxruntime's fused kernels (QLinearConv, QLinearAdd,
// QLinearGlobalAveragePool, QGemm) compute, in exact int32 accumulation and float32 requantization.
// Float simulation and integer kernels agree up to rare rounding-boundary flips, but a deep net
// amplifies such flips; emulating the integer arithmetic keeps the comparison tight, so a test can
// demand that ORT's logits lie within two quantization steps of it.

interface QAct {
  q: Uint8Array;
  c: number;
  h: number;
  w: number;
  quant: ActQuant;
}

const f32 = Math.fround;

function requantize(acc: number, multiplier: number, zp: number, lo: number, hi: number): number {
  const q = roundHalfEven(f32(f32(acc) * multiplier)) + zp;
  return q < lo ? lo : q > hi ? hi : q;
}

function quantizeInput(x: Float32Array, quant: ActQuant): Uint8Array {
  const out = new Uint8Array(x.length);
  const s = f32(quant.scale);
  for (let i = 0; i < x.length; i++) {
    const q = roundHalfEven(f32(x[i] / s)) + quant.zeroPoint;
    out[i] = q < 0 ? 0 : q > 255 ? 255 : q;
  }
  return out;
}

/** Output clamp bounds for a ReLU6 conv: the quantized images of 0 and 6 within [0, 255]. */
function relu6Bounds(quant: ActQuant): [number, number] {
  const s = f32(quant.scale);
  const q0 = roundHalfEven(f32(0 / s)) + quant.zeroPoint;
  const q6 = roundHalfEven(f32(6 / s)) + quant.zeroPoint;
  return [Math.max(0, q0), Math.min(255, q6)];
}

function convInt(x: QAct, n: number, node: ConvNode, biasQ: Int32Array): QAct {
  const [kh, kw] = node.kernel;
  const [sh, sw] = node.strides;
  const [pt, pl, pb, pr] = node.pads;
  const oh = Math.floor((x.h + pt + pb - kh) / sh) + 1;
  const ow = Math.floor((x.w + pl + pr - kw) / sw) + 1;
  const oc = node.outChannels;
  const icpg = node.inChannels / node.group;
  const ocpg = oc / node.group;
  const zx = x.quant.zeroPoint;
  const inPlane = x.h * x.w;
  const outPlane = oh * ow;
  const acc = new Int32Array(outPlane);
  const out = new Uint8Array(n * oc * outPlane);
  const sIn = f32(x.quant.scale);
  const sOut = f32(node.outQuant.scale);
  const [lo, hi] = node.activation === 'relu6' ? relu6Bounds(node.outQuant) : [0, 255];
  // Input with the zero point removed, so padding (which holds zx) contributes exactly zero.
  const xs = new Int32Array(x.q.length);
  for (let i = 0; i < xs.length; i++) xs[i] = x.q[i] - zx;
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < oc; o++) {
      const g = (o / ocpg) | 0;
      acc.fill(biasQ[o]);
      for (let ci = 0; ci < icpg; ci++) {
        const src = (b * x.c + g * icpg + ci) * inPlane;
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const wv = node.weightInt8[((o * icpg + ci) * kh + ky) * kw + kx];
            if (wv === 0) continue;
            for (let y = 0; y < oh; y++) {
              const iy = y * sh - pt + ky;
              if (iy < 0 || iy >= x.h) continue;
              const row = src + iy * x.w;
              const orow = y * ow;
              for (let xx = 0; xx < ow; xx++) {
                const ix = xx * sw - pl + kx;
                if (ix < 0 || ix >= x.w) continue;
                acc[orow + xx] += wv * xs[row + ix];
              }
            }
          }
        }
      }
      const m = f32(f32(sIn * node.weightScale[o]) / sOut);
      const dst = (b * oc + o) * outPlane;
      for (let p = 0; p < outPlane; p++) out[dst + p] = requantize(acc[p], m, node.outQuant.zeroPoint, lo, hi);
    }
  }
  return { q: out, c: oc, h: oh, w: ow, quant: node.outQuant };
}

/**
 * Runs the graph the way onnxruntime's fused integer kernels do and returns dequantized logits.
 * Same inputs and outputs as `runQdqReference`.
 */
export function runIntegerReference(graph: QuantGraph, input: Float32Array, n: number): Float32Array {
  const size = graph.inputSize;
  if (input.length !== n * 3 * size * size) throw new Error(`input has ${input.length} values, expected ${n}x3x${size}x${size}`);
  const acts = new Map<string, QAct>();
  const get = (name: string): QAct => {
    const a = acts.get(name);
    if (!a) throw new Error(`tensor '${name}' read before it is written`);
    return a;
  };
  acts.set(graph.input.name, { q: quantizeInput(input, graph.input.quant), c: 3, h: size, w: size, quant: graph.input.quant });

  for (const node of graph.nodes) {
    switch (node.op) {
      case 'conv': {
        const x = get(node.input);
        const biasQ = quantizeBias(node.bias, biasScales(x.quant.scale, node.weightScale));
        acts.set(node.output, convInt(x, n, node, biasQ));
        break;
      }
      case 'add': {
        const a = get(node.inputs[0]);
        const b = get(node.inputs[1]);
        const q = qlinearAdd(a.q, a.quant, b.q, b.quant, node.outQuant, new Uint8Array(a.q.length));
        acts.set(node.output, { q, c: a.c, h: a.h, w: a.w, quant: node.outQuant });
        break;
      }
      case 'globalAvgPool': {
        const x = get(node.input);
        const plane = x.h * x.w;
        const m = f32(f32(x.quant.scale) / f32(f32(node.outQuant.scale) * plane));
        const q = new Uint8Array(n * x.c);
        for (let i = 0; i < q.length; i++) {
          let s = -x.quant.zeroPoint * plane;
          for (let p = 0; p < plane; p++) s += x.q[i * plane + p];
          q[i] = requantize(s, m, node.outQuant.zeroPoint, 0, 255);
        }
        acts.set(node.output, { q, c: x.c, h: 1, w: 1, quant: node.outQuant });
        break;
      }
      case 'dense': {
        const x = get(node.input);
        const biasQ = quantizeBias(node.bias, biasScales(x.quant.scale, node.weightScale));
        const inF = node.inFeatures;
        const zx = x.quant.zeroPoint;
        const sIn = f32(x.quant.scale);
        const sOut = f32(node.outQuant.scale);
        const q = new Uint8Array(n * node.outFeatures);
        for (let b = 0; b < n; b++) {
          for (let o = 0; o < node.outFeatures; o++) {
            let acc = biasQ[o];
            for (let i = 0; i < inF; i++) acc += node.weightInt8[o * inF + i] * (x.q[b * inF + i] - zx);
            const m = f32(f32(sIn * node.weightScale[o]) / sOut);
            q[b * node.outFeatures + o] = requantize(acc, m, node.outQuant.zeroPoint, 0, 255);
          }
        }
        acts.set(node.output, { q, c: node.outFeatures, h: 1, w: 1, quant: node.outQuant });
        break;
      }
    }
  }
  const out = get(graph.output);
  const s = f32(out.quant.scale);
  return Float32Array.from(out.q, (v) => (v - out.quant.zeroPoint) * s);
}
