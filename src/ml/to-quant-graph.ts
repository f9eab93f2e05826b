// From a trained QAT model to the int8 QuantGraph IR (quant-graph.ts) that src/export writes as
// ONNX QDQ. Everything is computed from the same numbers the fake-quant eval model uses, so the
// int8 graph reproduces it:
//   - conv weights: int8 = round(W / s) per output channel (s = max|W| / qmax, qmax 127 or 63
//     by the model's weightBits), with the BN fold applied to the scale:
//     scale = s * |k|, sign(k) folded into the integers (see conv-bn-fold.ts for why that is the
//     grid trained on); bias = beta - runMean * k;
//   - activations: actQParams of the frozen EMA ranges (ReLU6 outputs inside [0, 6]);
//   - layouts: tfjs [kh, kw, in, out] -> OIHW; depthwise [kh, kw, C, 1] -> [C, 1, kh, kw];
//     dense [in, out] -> [out, in]; pads explicit (symmetric (k - 1) / 2, as trained).
import { actQParams, quantizeWeightsPerChannel } from './fake-quant.js';
import { foldFactors, channelAxis } from './conv-bn-fold.js';
import { graphLayers, relu6Points, type ConvSpec, type MobileNetV2 } from './mobilenet-v2.js';
import type { ActQuant, ConvNode, DenseNode, QuantGraph, QuantNode } from './quant-graph.js';

export class QuantExportError extends Error {
  readonly code = 'QUANT_RANGES_MISSING';
  constructor(message: string) {
    super(message);
    this.name = 'QuantExportError';
  }
}

export const readVariable = (m: MobileNetV2, name: string) => m.v(name).dataSync() as Float32Array;

/**
 * For each element of a conv's OIHW weights ([out, in / group, kh, kw]), its index in the tfjs
 * variable: conv [kh, kw, in, out], depthwise [kh, kw, C, 1].
 */
export function oihwOrder(c: ConvSpec): Uint32Array {
  const inPerGroup = c.kind === 'conv' ? c.inC : 1;
  const order = new Uint32Array(c.outC * inPerGroup * c.k * c.k);
  let j = 0;
  for (let o = 0; o < c.outC; o++) {
    for (let i = 0; i < inPerGroup; i++) {
      for (let y = 0; y < c.k; y++) {
        for (let x = 0; x < c.k; x++) order[j++] = c.kind === 'conv' ? ((y * c.k + x) * c.inC + i) * c.outC + o : (y * c.k + x) * c.outC + o;
      }
    }
  }
  return order;
}

/** A conv's weights, in tfjs layout, and its BN fold (k, bias) from the running statistics. */
export function readFoldedConv(m: MobileNetV2, c: ConvSpec) {
  const { k, bias } = foldFactors({
    gamma: readVariable(m, `${c.name}/gamma`),
    beta: readVariable(m, `${c.name}/beta`),
    runMean: readVariable(m, `${c.name}/runMean`),
    runVar: readVariable(m, `${c.name}/runVar`),
  });
  return { w: readVariable(m, `${c.name}/w`), shape: m.v(`${c.name}/w`).shape, k, bias };
}

/** A conv node's geometry as the graph IRs state it (pads symmetric (k - 1) / 2, as trained). */
export function convLayout(c: ConvSpec) {
  const p = (c.k - 1) / 2;
  return {
    name: c.name,
    kernel: [c.k, c.k] as [number, number],
    strides: [c.stride, c.stride] as [number, number],
    pads: [p, p, p, p] as [number, number, number, number],
    group: c.kind === 'conv' ? 1 : c.inC,
    inChannels: c.inC,
    outChannels: c.outC,
    activation: c.relu6 ? ('relu6' as const) : ('none' as const),
  };
}

/** The classifier's [in, out] weights as [out, in]. */
export function transposeDense<T extends Int8Array | Float32Array>(w: ArrayLike<number>, inF: number, outF: number, out: T): T {
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) out[o * inF + i] = w[i * outF + o];
  return out;
}

function convNode(m: MobileNetV2, c: ConvSpec, input: string, outQuant: ActQuant): ConvNode {
  const { w, shape, k, bias } = readFoldedConv(m, c);
  const { int8, scales } = quantizeWeightsPerChannel(w, shape, channelAxis(c.kind), m.weightQmax);
  const order = oihwOrder(c);
  const perOut = order.length / c.outC;
  const oihw = new Int8Array(order.length);
  const weightScale = new Float32Array(c.outC);
  for (let o = 0; o < c.outC; o++) {
    // k = 0 (gamma decayed to zero): the channel is constant `bias`; keep the unfolded scale so
    // the exporter's int32 bias (bias / (inputScale * weightScale)) stays finite.
    const sign = k[o] < 0 ? -1 : 1;
    const zero = k[o] === 0;
    weightScale[o] = zero ? scales[o] : Math.fround(scales[o] * Math.abs(k[o]));
    for (let j = o * perOut; j < (o + 1) * perOut; j++) oihw[j] = zero ? 0 : sign * int8[order[j]];
  }
  return { op: 'conv', ...convLayout(c), output: c.name, outQuant, input, weightInt8: oihw, weightScale, bias };
}

function denseNode(m: MobileNetV2, input: string, output: string, outQuant: ActQuant): DenseNode {
  const d = m.arch.dense;
  const { int8, scales } = quantizeWeightsPerChannel(readVariable(m, `${d.name}/w`), [d.inF, d.outF], 1, m.weightQmax);
  return {
    op: 'dense',
    name: d.name,
    output,
    outQuant,
    input,
    inFeatures: d.inF,
    outFeatures: d.outF,
    weightInt8: transposeDense(int8, d.inF, d.outF, new Int8Array(d.outF * d.inF)),
    weightScale: scales,
    bias: readVariable(m, `${d.name}/b`).slice(),
  };
}

export function toQuantGraph(m: MobileNetV2, classes: string[], normalization: QuantGraph['normalization']): QuantGraph {
  const relu6 = relu6Points(m.arch);
  const qp = (name: string): ActQuant => {
    const r = m.ranges.get(name);
    if (!r) throw new QuantExportError(`no activation range for ${name}: the model was never trained`);
    return actQParams(r.min, r.max, relu6.has(name));
  };
  const nodes: QuantNode[] = graphLayers(m.arch).map((l): QuantNode => {
    switch (l.op) {
      case 'conv':
        return convNode(m, l.conv, l.input, qp(l.output));
      case 'add':
        return { op: 'add', name: l.name, output: l.output, outQuant: qp(l.output), inputs: l.inputs };
      case 'globalAvgPool':
        return { op: 'globalAvgPool', name: l.output, output: l.output, outQuant: qp(l.output), input: l.input };
      case 'dense':
        return denseNode(m, l.input, l.output, qp(l.output));
    }
  });
  return {
    inputSize: m.arch.inputSize,
    numClasses: m.arch.numClasses,
    classes,
    weightBits: m.weightBits,
    normalization,
    input: { name: 'input', quant: qp('input') },
    nodes,
    output: 'logits',
  };
}
