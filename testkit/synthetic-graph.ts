// MobileNetV2-shaped QuantGraphs with random weights and calibrated, realistic activation ranges.
// Tests and benchmarks use them to exercise the exporter and the serving path without a trained
// model: weights are He-initialised and quantized per channel like QAT does, and every activation
// range comes from running the float network on image-like inputs (ReLU6 ranges inside [0, 6] with
// zero point 0, as trained ones are).
import { weightQmax, type ActQuant, type ConvNode, type QuantGraph, type QuantNode, type WeightBits } from '../src/ml/quant-graph.js';
import { runQdqReference } from './qdq-reference.js';

export interface SyntheticGraphOptions {
  width?: number;
  inputSize?: number;
  numClasses?: number;
  seed?: number;
  /** Images used to calibrate activation ranges (default 2). */
  calibrationImages?: number;
  /** Stride-1 stem and first stride-2 stage, as the trainer does for small inputs. */
  smallInputStem?: boolean;
  /** 'symmetric' (default, what the trainer exports) or TF 'same'. */
  padding?: 'symmetric' | 'same';
  /** Weight grid: 8 bits ([-127, 127], default) or 7 ([-63, 63], the trainer's default). */
  weightBits?: WeightBits;
}

/** ImageNet normalization, the trainer's default. */
export const IMAGENET_NORMALIZATION = {
  mean: [0.485, 0.456, 0.406] as [number, number, number],
  std: [0.229, 0.224, 0.225] as [number, number, number],
};

export function makeDivisible(v: number, divisor = 8): number {
  const n = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  return n < 0.9 * v ? n + divisor : n;
}

/** TF 'same' padding: the extra row/column goes at the bottom/right. */
export function samePads(inSize: number, kernel: number, stride: number): [number, number] {
  const out = Math.ceil(inSize / stride);
  const total = Math.max((out - 1) * stride + kernel - inSize, 0);
  const begin = Math.floor(total / 2);
  return [begin, total - begin];
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** Symmetric per-output-channel quantization into [-qmax, qmax] of float weights laid out [out, ...]. */
export function quantizeWeightsPerChannel(w: Float32Array, outChannels: number, qmax = 127): { q: Int8Array; scale: Float32Array } {
  const per = w.length / outChannels;
  const q = new Int8Array(w.length);
  const scale = new Float32Array(outChannels);
  for (let o = 0; o < outChannels; o++) {
    let m = 0;
    for (let i = 0; i < per; i++) m = Math.max(m, Math.abs(w[o * per + i]));
    const s = m > 0 ? m / qmax : 1;
    scale[o] = s;
    for (let i = 0; i < per; i++) q[o * per + i] = Math.max(-qmax, Math.min(qmax, Math.round(w[o * per + i] / s)));
  }
  return { q, scale };
}

/** uint8 asymmetric quant covering [min, max] (always including 0, so zero is exact). */
export function actQuantFor(min: number, max: number, relu6: boolean): ActQuant {
  if (relu6) {
    const hi = Math.min(Math.max(max, 1e-3), 6);
    // Keep scale * 255 <= 6 in float32 so ORT folds the Clip into the QuantizeLinear.
    let scale = Math.fround(hi / 255);
    while (Math.fround(scale * 255) > 6) scale = Math.fround(scale * (1 - 1e-7));
    return { scale, zeroPoint: 0 };
  }
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const scale = Math.max(hi - lo, 1e-6) / 255;
  const zeroPoint = Math.max(0, Math.min(255, Math.round(-lo / scale)));
  return { scale: Math.fround(scale), zeroPoint };
}

/** Image-like normalized NCHW input: smooth random colour fields plus noise, in [0, 1] before normalization. */
export function syntheticImages(n: number, size: number, seed: number, normalization = IMAGENET_NORMALIZATION): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n * 3 * size * size);
  for (let b = 0; b < n; b++) {
    for (let c = 0; c < 3; c++) {
      const fx = 1 + rand() * 4;
      const fy = 1 + rand() * 4;
      const phase = rand() * 6.28;
      const base = rand();
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const v = base * 0.5 + 0.25 * (1 + Math.sin(((fx * x + fy * y) / size) * 6.28 + phase)) + (rand() - 0.5) * 0.2;
          const clamped = Math.min(1, Math.max(0, v));
          out[((b * 3 + c) * size + y) * size + x] = (clamped - normalization.mean[c]) / normalization.std[c];
        }
      }
    }
  }
  return out;
}

/** Builds a random MobileNetV2 QuantGraph and calibrates its activation ranges. */
export function buildSyntheticMobileNetV2(options: SyntheticGraphOptions = {}): QuantGraph {
  const width = options.width ?? 1.0;
  const inputSize = options.inputSize ?? 224;
  const numClasses = options.numClasses ?? 10;
  const seed = options.seed ?? 1;
  const weightBits = options.weightBits ?? 8;
  const qmax = weightQmax(weightBits);
  const small = options.smallInputStem ?? inputSize < 64;
  const randn = gaussian(mulberry32(seed));
  const placeholder: ActQuant = { scale: 1, zeroPoint: 0 };
  const nodes: QuantNode[] = [];
  let spatial = inputSize;

  const convNode = (name: string, input: string, inC: number, outC: number, k: number, stride: number, group: number, relu6: boolean): ConvNode => {
    const fanIn = (inC / group) * k * k;
    // He init for ReLU layers; linear projections get a smaller gain, as trained nets do.
    const std = Math.sqrt((relu6 ? 2 : 1) / fanIn);
    const w = new Float32Array(outC * (inC / group) * k * k);
    for (let i = 0; i < w.length; i++) w[i] = randn() * std;
    const { q, scale } = quantizeWeightsPerChannel(w, outC, qmax);
    const bias = new Float32Array(outC);
    for (let i = 0; i < outC; i++) bias[i] = randn() * 0.1 + (relu6 ? 0.2 : 0);
    // The trainer pads symmetrically ((k - 1) / 2, as PyTorch does); 'same' is TF's asymmetric
    // padding (extra row/column at the end for stride 2).
    const [pb, pe] = options.padding === 'same' ? samePads(spatial, k, stride) : [(k - 1) / 2, (k - 1) / 2];
    spatial = Math.floor((spatial + pb + pe - k) / stride) + 1;
    const node: ConvNode = {
      op: 'conv',
      name,
      input,
      output: `${name}/out`,
      outQuant: placeholder,
      kernel: [k, k],
      strides: [stride, stride],
      pads: [pb, pb, pe, pe],
      group,
      inChannels: inC,
      outChannels: outC,
      weightInt8: q,
      weightScale: scale,
      bias,
      activation: relu6 ? 'relu6' : 'none',
    };
    nodes.push(node);
    return node;
  };

  const stemC = makeDivisible(32 * width);
  let x = convNode('stem', 'input', 3, stemC, 3, small ? 1 : 2, 1, true).output;
  let inC = stemC;
  const settings: Array<[number, number, number, number]> = [
    [1, 16, 1, 1],
    [6, 24, 2, small ? 1 : 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
  ];
  let block = 0;
  for (const [t, c, n, s] of settings) {
    const outC = makeDivisible(c * width);
    for (let i = 0; i < n; i++) {
      const stride = i === 0 ? s : 1;
      const name = `block${block++}`;
      const blockIn = x;
      const hidden = inC * t;
      if (t !== 1) x = convNode(`${name}/expand`, x, inC, hidden, 1, 1, 1, true).output;
      x = convNode(`${name}/depthwise`, x, hidden, hidden, 3, stride, hidden, true).output;
      x = convNode(`${name}/project`, x, hidden, outC, 1, 1, 1, false).output;
      if (stride === 1 && inC === outC) {
        nodes.push({ op: 'add', name: `${name}/add`, inputs: [blockIn, x], output: `${name}/add/out`, outQuant: placeholder });
        x = `${name}/add/out`;
      }
      inC = outC;
    }
  }
  const lastC = width > 1 ? makeDivisible(1280 * width) : 1280;
  x = convNode('head', x, inC, lastC, 1, 1, 1, true).output;
  nodes.push({ op: 'globalAvgPool', name: 'pool', input: x, output: 'pool/out', outQuant: placeholder });
  const dw = new Float32Array(numClasses * lastC);
  for (let i = 0; i < dw.length; i++) dw[i] = randn() * Math.sqrt(1 / lastC) * 3;
  const dq = quantizeWeightsPerChannel(dw, numClasses, qmax);
  const db = new Float32Array(numClasses);
  for (let i = 0; i < numClasses; i++) db[i] = randn() * 0.1;
  nodes.push({
    op: 'dense',
    name: 'classifier',
    input: 'pool/out',
    output: 'logits',
    outQuant: placeholder,
    inFeatures: lastC,
    outFeatures: numClasses,
    weightInt8: dq.q,
    weightScale: dq.scale,
    bias: db,
  });

  const graph: QuantGraph = {
    inputSize,
    numClasses,
    classes: Array.from({ length: numClasses }, (_, i) => `class_${i}`),
    weightBits,
    normalization: IMAGENET_NORMALIZATION,
    input: { name: 'input', quant: actQuantFor(-0.485 / 0.229, (1 - 0.406) / 0.225, false) },
    nodes,
    output: 'logits',
  };
  calibrate(graph, syntheticImages(options.calibrationImages ?? 2, inputSize, seed + 1000), options.calibrationImages ?? 2);
  return graph;
}

/** Sets every node's outQuant from the ranges the float network produces on `images`. */
export function calibrate(graph: QuantGraph, images: Float32Array, n: number): void {
  const ranges = new Map<string, [number, number]>();
  runQdqReference(graph, images, n, {
    quantize: false,
    observe: (name, data) => {
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < data.length; i++) {
        const v = data[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      ranges.set(name, [lo, hi]);
    },
  });
  for (const node of graph.nodes) {
    const [lo, hi] = ranges.get(node.output)!;
    node.outQuant = actQuantFor(lo, hi, node.op === 'conv' && node.activation === 'relu6');
  }
}
