// A plain-JS emulation of a QuantGraph's int8 arithmetic, exactly as the QDQ ONNX file runs in
// onnxruntime's fused integer kernels. The export runs it on a few verification images to tell a
// broken file apart from a tfjs model that drifts from its own int8 graph; tests compare ORT
// against it. (The float interpreter of the same graph, test-only, is testkit/qdq-reference.ts.)
import { biasScales, convGeometry, quantizeBias, roundHalfEven, type ActQuant, type ConvNode, type QuantGraph } from '../ml/quant-graph.js';
import { qlinearAdd } from '../ml/qlinear-add.js';

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
  const { kh, kw, sh, sw, pt, pl, oh, ow, oc, icpg, ocpg } = convGeometry(node, x.h, x.w);
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
