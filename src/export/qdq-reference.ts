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

/** The outputs o in [0, outLen) whose input index o * stride - pad + k lies in [0, inLen). */
function validOutputs(inLen: number, outLen: number, k: number, stride: number, pad: number): [number, number] {
  const first = Math.max(0, Math.ceil((pad - k) / stride));
  const end = Math.min(outLen, Math.floor((inLen - 1 + pad - k) / stride) + 1);
  return [first, Math.max(first, end)];
}

/** True for a 1x1, stride-1, unpadded, ungrouped convolution: most of MobileNetV2's arithmetic. */
function isPointwise(node: ConvNode): boolean {
  const [kh, kw] = node.kernel;
  const [sh, sw] = node.strides;
  return kh === 1 && kw === 1 && sh === 1 && sw === 1 && node.group === 1 && node.pads.every((p) => p === 0);
}

/**
 * A pointwise convolution as dot products over channels: the input is transposed to
 * channels-last once, so each output pixel's sums for four output channels share every input
 * load and live in registers (the plane-at-a-time loop of `convInt` stores each partial sum).
 */
function pointwiseInt(x: QAct, n: number, node: ConvNode, biasQ: Int32Array): QAct {
  const ic = x.c;
  const oc = node.outChannels;
  const plane = x.h * x.w;
  const zx = x.quant.zeroPoint;
  const w = node.weightInt8;
  const sIn = f32(x.quant.scale);
  const sOut = f32(node.outQuant.scale);
  const zOut = node.outQuant.zeroPoint;
  const [lo, hi] = node.activation === 'relu6' ? relu6Bounds(node.outQuant) : [0, 255];
  const m = Float32Array.from({ length: oc }, (_, o) => f32(f32(sIn * node.weightScale[o]) / sOut));
  const xt = new Int32Array(plane * ic);
  const out = new Uint8Array(n * oc * plane);
  for (let b = 0; b < n; b++) {
    for (let c = 0; c < ic; c++) {
      const src = (b * ic + c) * plane;
      for (let p = 0; p < plane; p++) xt[p * ic + c] = x.q[src + p] - zx;
    }
    const base = b * oc * plane;
    for (let p = 0; p < plane; p++) {
      const xp = p * ic;
      let o = 0;
      for (; o + 4 <= oc; o += 4) {
        let s0 = biasQ[o];
        let s1 = biasQ[o + 1];
        let s2 = biasQ[o + 2];
        let s3 = biasQ[o + 3];
        const w0 = o * ic;
        for (let c = 0; c < ic; c++) {
          const v = xt[xp + c];
          s0 += w[w0 + c] * v;
          s1 += w[w0 + ic + c] * v;
          s2 += w[w0 + 2 * ic + c] * v;
          s3 += w[w0 + 3 * ic + c] * v;
        }
        out[base + o * plane + p] = requantize(s0, m[o], zOut, lo, hi);
        out[base + (o + 1) * plane + p] = requantize(s1, m[o + 1], zOut, lo, hi);
        out[base + (o + 2) * plane + p] = requantize(s2, m[o + 2], zOut, lo, hi);
        out[base + (o + 3) * plane + p] = requantize(s3, m[o + 3], zOut, lo, hi);
      }
      for (; o < oc; o++) {
        let s0 = biasQ[o];
        for (let c = 0; c < ic; c++) s0 += w[o * ic + c] * xt[xp + c];
        out[base + o * plane + p] = requantize(s0, m[o], zOut, lo, hi);
      }
    }
  }
  return { q: out, c: oc, h: x.h, w: x.w, quant: node.outQuant };
}

function convInt(x: QAct, n: number, node: ConvNode, biasQ: Int32Array): QAct {
  if (isPointwise(node)) return pointwiseInt(x, n, node, biasQ);
  const { kh, kw, sh, sw, pt, pl, oh, ow, oc, icpg, ocpg } = convGeometry(node, x.h, x.w);
  const zx = x.quant.zeroPoint;
  const inPlane = x.h * x.w;
  const outPlane = oh * ow;
  const acc = new Int32Array(outPlane);
  const out = new Uint8Array(n * oc * outPlane);
  const sIn = f32(x.quant.scale);
  const sOut = f32(node.outQuant.scale);
  const [lo, hi] = node.activation === 'relu6' ? relu6Bounds(node.outQuant) : [0, 255];
  // Input with the zero point removed, so padding (which holds zx) contributes exactly zero and
  // the taps that fall in it are skipped: each tap runs over the outputs it reaches, found once
  // (validOutputs) rather than tested per pixel.
  const xs = new Int32Array(x.q.length);
  for (let i = 0; i < xs.length; i++) xs[i] = x.q[i] - zx;
  const rows = Array.from({ length: kh }, (_, ky) => validOutputs(x.h, oh, ky, sh, pt));
  const cols = Array.from({ length: kw }, (_, kx) => validOutputs(x.w, ow, kx, sw, pl));
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < oc; o++) {
      const g = (o / ocpg) | 0;
      acc.fill(biasQ[o]);
      for (let ci = 0; ci < icpg; ci++) {
        const src = (b * x.c + g * icpg + ci) * inPlane;
        for (let ky = 0; ky < kh; ky++) {
          const [y0, y1] = rows[ky];
          for (let kx = 0; kx < kw; kx++) {
            const wv = node.weightInt8[((o * icpg + ci) * kh + ky) * kw + kx];
            if (wv === 0) continue;
            const [x0, x1] = cols[kx];
            for (let y = y0; y < y1; y++) {
              const orow = y * ow;
              let i = src + (y * sh - pt + ky) * x.w + x0 * sw - pl + kx;
              for (let xx = x0; xx < x1; xx++, i += sw) acc[orow + xx] += wv * xs[i];
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
