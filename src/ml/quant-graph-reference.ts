// A plain-JS integer reference run of a QuantGraph, arithmetic as ONNX Runtime's QLinear* kernels
// do it: uint8 activations, int8 weights, int32 accumulation with the bias quantized to
// round(bias / (inputScale * weightScale)), requantization to the output's uint8 grid. Slow and
// simple: it exists to check toQuantGraph against the fake-quant model (tests) and the ONNX export
// against both. Input and output are float; layout NCHW as in the exported graph.
import { roundHalfEven } from './fake-quant.js';
import type { ActQuant, QuantGraph } from './quant-graph.js';

interface QTensor {
  q: Uint8Array;
  quant: ActQuant;
  c: number;
  h: number;
  w: number;
}

const quantize = (v: number, p: ActQuant) => Math.min(255, Math.max(0, roundHalfEven(Math.fround(v / p.scale)) + p.zeroPoint));

/**
 * Runs the graph on one image ([3, S, S] normalized floats); returns dequantized logits.
 * `trace`, when given, receives every tensor dequantized (NCHW), by name, for debugging.
 */
export function runQuantGraphReference(g: QuantGraph, chw: Float32Array, trace?: Map<string, Float32Array>): Float32Array {
  const S = g.inputSize;
  const input: QTensor = { q: new Uint8Array(3 * S * S), quant: g.input.quant, c: 3, h: S, w: S };
  for (let i = 0; i < input.q.length; i++) input.q[i] = quantize(chw[i]!, g.input.quant);
  const env = new Map<string, QTensor>([[g.input.name, input]]);
  for (const n of g.nodes) {
    if (n.op === 'conv') {
      const x = env.get(n.input)!;
      const [kh, kw] = n.kernel;
      const [sh, sw] = n.strides;
      const [pt, pl, pb, pr] = n.pads;
      const oh = Math.floor((x.h + pt + pb - kh) / sh) + 1;
      const ow = Math.floor((x.w + pl + pr - kw) / sw) + 1;
      const out = new Uint8Array(n.outChannels * oh * ow);
      const inPerGroup = n.inChannels / n.group;
      const outPerGroup = n.outChannels / n.group;
      for (let o = 0; o < n.outChannels; o++) {
        const gi = Math.floor(o / outPerGroup);
        const accScale = x.quant.scale * n.weightScale[o]!;
        const biasQ = roundHalfEven(n.bias[o]! / accScale);
        for (let oy = 0; oy < oh; oy++) {
          for (let ox = 0; ox < ow; ox++) {
            let acc = biasQ;
            for (let i = 0; i < inPerGroup; i++) {
              const ci = gi * inPerGroup + i;
              for (let ky = 0; ky < kh; ky++) {
                const iy = oy * sh - pt + ky;
                if (iy < 0 || iy >= x.h) continue;
                for (let kx = 0; kx < kw; kx++) {
                  const ix = ox * sw - pl + kx;
                  if (ix < 0 || ix >= x.w) continue;
                  const xv = x.q[(ci * x.h + iy) * x.w + ix]! - x.quant.zeroPoint;
                  acc += xv * n.weightInt8[((o * inPerGroup + i) * kh + ky) * kw + kx]!;
                }
              }
            }
            let real = acc * accScale;
            if (n.activation === 'relu6') real = Math.min(6, Math.max(0, real));
            out[(o * oh + oy) * ow + ox] = quantize(real, n.outQuant);
          }
        }
      }
      env.set(n.output, { q: out, quant: n.outQuant, c: n.outChannels, h: oh, w: ow });
    } else if (n.op === 'add') {
      const a = env.get(n.inputs[0])!;
      const b = env.get(n.inputs[1])!;
      const out = new Uint8Array(a.q.length);
      for (let i = 0; i < out.length; i++) {
        const real = (a.q[i]! - a.quant.zeroPoint) * a.quant.scale + (b.q[i]! - b.quant.zeroPoint) * b.quant.scale;
        out[i] = quantize(real, n.outQuant);
      }
      env.set(n.output, { ...a, q: out, quant: n.outQuant });
    } else if (n.op === 'globalAvgPool') {
      const x = env.get(n.input)!;
      const out = new Uint8Array(x.c);
      const hw = x.h * x.w;
      for (let c = 0; c < x.c; c++) {
        let s = 0;
        for (let i = 0; i < hw; i++) s += x.q[c * hw + i]! - x.quant.zeroPoint;
        out[c] = quantize((s / hw) * x.quant.scale, n.outQuant);
      }
      env.set(n.output, { q: out, quant: n.outQuant, c: x.c, h: 1, w: 1 });
    } else {
      const x = env.get(n.input)!;
      const out = new Uint8Array(n.outFeatures);
      for (let o = 0; o < n.outFeatures; o++) {
        const accScale = x.quant.scale * n.weightScale[o]!;
        let acc = roundHalfEven(n.bias[o]! / accScale);
        for (let i = 0; i < n.inFeatures; i++) acc += (x.q[i]! - x.quant.zeroPoint) * n.weightInt8[o * n.inFeatures + i]!;
        out[o] = quantize(acc * accScale, n.outQuant);
      }
      env.set(n.output, { q: out, quant: n.outQuant, c: n.outFeatures, h: 1, w: 1 });
    }
  }
  if (trace) {
    for (const [k, t] of env) trace.set(k, Float32Array.from(t.q, (v) => (v - t.quant.zeroPoint) * t.quant.scale));
  }
  const res = env.get(g.output)!;
  return Float32Array.from(res.q, (v) => (v - res.quant.zeroPoint) * res.quant.scale);
}

/** NHWC (tfjs, the data layer) -> NCHW (the exported graph) for image `i` of a batch. */
export function nhwcToChw(x: Float32Array, i: number, size: number): Float32Array {
  const out = new Float32Array(3 * size * size);
  const base = i * size * size * 3;
  for (let y = 0; y < size; y++) for (let xx = 0; xx < size; xx++) for (let c = 0; c < 3; c++) {
    out[(c * size + y) * size + xx] = x[base + (y * size + xx) * 3 + c]!;
  }
  return out;
}
