// Test-only: a plain-JS float interpreter of a QuantGraph with exactly the semantics the QDQ ONNX
// file states: activations fake-quantized to uint8 (round half to even, saturate), weights
// dequantized from int8 per channel, biases from int32 at scale inputScale * weightScale[c]. It is
// slow and simple on purpose: tests compare onnxruntime against it, and calibration of synthetic
// graphs runs it with quantization off. The integer emulation the export uses is
// src/export/qdq-reference.ts.
import { biasScales, convGeometry, quantizeBias, roundHalfEven, type ActQuant, type ConvNode, type QuantGraph } from '../src/ml/quant-graph.js';

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
  const { kh, kw, sh, sw, pt, pl, oh, ow, oc, icpg, ocpg } = convGeometry(node, x.h, x.w);
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
