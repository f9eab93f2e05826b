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
import { relu6Points, type ConvSpec, type MobileNetV2 } from './mobilenet-v2.js';
import type { ActQuant, ConvNode, DenseNode, QuantGraph, QuantNode } from './quant-graph.js';

export class QuantExportError extends Error {
  readonly code = 'QUANT_RANGES_MISSING';
  constructor(message: string) {
    super(message);
    this.name = 'QuantExportError';
  }
}

const read = (m: MobileNetV2, name: string) => m.v(name).dataSync() as Float32Array;

function convNode(m: MobileNetV2, c: ConvSpec, input: string, outQuant: ActQuant): ConvNode {
  const w = read(m, `${c.name}/w`);
  const shape = m.v(`${c.name}/w`).shape;
  const { k, bias } = foldFactors({
    gamma: read(m, `${c.name}/gamma`),
    beta: read(m, `${c.name}/beta`),
    runMean: read(m, `${c.name}/runMean`),
    runVar: read(m, `${c.name}/runVar`),
  });
  const { int8, scales } = quantizeWeightsPerChannel(w, shape, channelAxis(c.kind), m.weightQmax);
  const [kh, kw] = [c.k, c.k];
  const inPerGroup = c.kind === 'conv' ? c.inC : 1;
  const oihw = new Int8Array(c.outC * inPerGroup * kh * kw);
  const weightScale = new Float32Array(c.outC);
  for (let o = 0; o < c.outC; o++) {
    // k = 0 (gamma decayed to zero): the channel is constant `bias`; keep the unfolded scale so
    // the exporter's int32 bias (bias / (inputScale * weightScale)) stays finite.
    const sign = k[o] < 0 ? -1 : 1;
    const zero = k[o] === 0;
    weightScale[o] = zero ? scales[o] : Math.fround(scales[o] * Math.abs(k[o]));
    for (let i = 0; i < inPerGroup; i++) {
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          // tfjs index: conv [y][x][i][o] with in = c.inC; depthwise [y][x][o][0].
          const src = c.kind === 'conv' ? ((y * kw + x) * c.inC + i) * c.outC + o : (y * kw + x) * c.outC + o;
          oihw[((o * inPerGroup + i) * kh + y) * kw + x] = zero ? 0 : sign * int8[src];
        }
      }
    }
  }
  const p = (c.k - 1) / 2;
  return {
    op: 'conv',
    name: c.name,
    output: c.name,
    outQuant,
    input,
    kernel: [kh, kw],
    strides: [c.stride, c.stride],
    pads: [p, p, p, p],
    group: c.kind === 'conv' ? 1 : c.inC,
    inChannels: c.inC,
    outChannels: c.outC,
    weightInt8: oihw,
    weightScale,
    bias,
    activation: c.relu6 ? 'relu6' : 'none',
  };
}

export function toQuantGraph(m: MobileNetV2, classes: string[], normalization: QuantGraph['normalization']): QuantGraph {
  const relu6 = relu6Points(m.arch);
  const qp = (name: string): ActQuant => {
    const r = m.ranges.get(name);
    if (!r) throw new QuantExportError(`no activation range for ${name}: the model was never trained`);
    return actQParams(r.min, r.max, relu6.has(name));
  };
  const nodes: QuantNode[] = [];
  let cur = 'input';
  const conv = (c: ConvSpec) => {
    nodes.push(convNode(m, c, cur, qp(c.name)));
    cur = c.name;
  };
  conv(m.arch.stem);
  for (const b of m.arch.blocks) {
    const blockIn = cur;
    if (b.expand) conv(b.expand);
    conv(b.dw);
    conv(b.project);
    if (b.residual) {
      const name = `${b.name}/add`;
      nodes.push({ op: 'add', name, output: name, outQuant: qp(name), inputs: [blockIn, cur] });
      cur = name;
    }
  }
  conv(m.arch.head);
  nodes.push({ op: 'globalAvgPool', name: 'pool', output: 'pool', outQuant: qp('pool'), input: cur });
  const d = m.arch.dense;
  const w = read(m, `${d.name}/w`);
  const { int8, scales } = quantizeWeightsPerChannel(w, [d.inF, d.outF], 1, m.weightQmax);
  const oi = new Int8Array(d.outF * d.inF);
  for (let o = 0; o < d.outF; o++) for (let i = 0; i < d.inF; i++) oi[o * d.inF + i] = int8[i * d.outF + o]!;
  const dense: DenseNode = {
    op: 'dense',
    name: d.name,
    output: 'logits',
    outQuant: qp('logits'),
    input: 'pool',
    inFeatures: d.inF,
    outFeatures: d.outF,
    weightInt8: oi,
    weightScale: scales,
    bias: read(m, `${d.name}/b`).slice(),
  };
  nodes.push(dense);
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
