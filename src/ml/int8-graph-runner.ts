// The trained network's int8 graph, executed with tfjs ops in the integer domain: the evaluation
// model behind the reported fake-quant accuracy and behind `predict()`, which the exporter checks
// the ONNX file against.
//
// Why not the float fake-quant forward: it computes conv(x, Wq) on dequantized floats, so its
// rounding of each activation to the 8-bit grid differs from integer kernels whenever float32
// error lands a value on the other side of a .5 boundary. A deep network amplifies those rare
// flips: on a real checkpoint the float forward was 7-12 logit steps away from the integer graph
// (95% top-1 agreement), far outside the export gate's two steps. Here every tensor holds
// integers (activation minus zero point), convolutions of integers are exact in float32 while
// partial sums stay below 2^24, and requantization is the float32 multiply-and-round ONNX Runtime's
// QLinear kernels do. Training keeps the float fake-quant path (it needs gradients).
import { tf } from './tf.js';
import { biasScales, quantizeBias, roundHalfEven, type ActQuant, type QuantGraph, type QuantNode } from './quant-graph.js';
import { qatOps } from './qat-ops.js';

const f32 = Math.fround;

/** An activation as integers: q - zeroPoint (so zero padding is the real zero). */
interface IntAct {
  centered: tf.Tensor;
  quant: ActQuant;
}

interface PreparedConv {
  node: Extract<QuantNode, { op: 'conv' }>;
  filter: tf.Tensor4D;
  biasQ: tf.Tensor1D;
  multiplier: tf.Tensor1D;
  lo: number;
  hi: number;
}

interface PreparedDense {
  node: Extract<QuantNode, { op: 'dense' }>;
  weight: tf.Tensor2D;
  biasQ: tf.Tensor1D;
  multiplier: tf.Tensor1D;
}

/** Requantization multiplier as ORT's kernels compute it: f32(f32(sIn * sW) / sOut). */
function multipliers(inScale: number, weightScale: Float32Array, outScale: number): Float32Array {
  const sIn = f32(inScale);
  const sOut = f32(outScale);
  return Float32Array.from(weightScale, (w) => f32(f32(sIn * w) / sOut));
}

/** Clamp range of a conv's output: [0, 255], or the images of 0 and 6 for a fused ReLU6. */
function outputBounds(node: { activation: 'relu6' | 'none'; outQuant: ActQuant }): [number, number] {
  if (node.activation !== 'relu6') return [0, 255];
  const s = f32(node.outQuant.scale);
  const zp = node.outQuant.zeroPoint;
  return [Math.max(0, zp), Math.min(255, roundHalfEven(f32(6 / s)) + zp)];
}

/** OIHW int8 -> tfjs layout: conv [kh, kw, in, out], depthwise [kh, kw, C, 1]. */
function tfjsFilter(node: Extract<QuantNode, { op: 'conv' }>): tf.Tensor4D {
  const [kh, kw] = node.kernel;
  const depthwise = node.group > 1;
  if (depthwise && (node.group !== node.inChannels || node.outChannels !== node.inChannels)) {
    throw new Error(`${node.name}: only depthwise (multiplier 1) or ungrouped convs are supported`);
  }
  const icpg = node.inChannels / node.group;
  const out = new Float32Array(node.weightInt8.length);
  for (let o = 0; o < node.outChannels; o++) {
    for (let i = 0; i < icpg; i++) {
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          const v = node.weightInt8[((o * icpg + i) * kh + y) * kw + x];
          out[depthwise ? (y * kw + x) * node.outChannels + o : ((y * kw + x) * icpg + i) * node.outChannels + o] = v;
        }
      }
    }
  }
  return depthwise ? tf.tensor4d(out, [kh, kw, node.outChannels, 1]) : tf.tensor4d(out, [kh, kw, icpg, node.outChannels]);
}

/** Round half to even (tf.round), add the zero point, clamp: the uint8 value, minus its zero point. */
function requantize(real: tf.Tensor, zeroPoint: number, lo: number, hi: number): tf.Tensor {
  return tf.sub(tf.clipByValue(tf.add(tf.round(real), zeroPoint), lo, hi), zeroPoint);
}

/** How many nodes read each activation (an activation read twice, e.g. by a residual add, counts 2). */
function consumerCounts(graph: QuantGraph): Map<string, number> {
  const uses = new Map<string, number>();
  for (const node of graph.nodes) {
    for (const input of node.op === 'add' ? node.inputs : [node.input]) uses.set(input, (uses.get(input) ?? 0) + 1);
  }
  return uses;
}

export class Int8GraphRunner {
  private readonly convs = new Map<string, PreparedConv>();
  private dense: PreparedDense | null = null;
  private readonly tensors: tf.Tensor[] = [];

  constructor(readonly graph: QuantGraph) {
    const quantOf = new Map<string, ActQuant>([[graph.input.name, graph.input.quant]]);
    for (const node of graph.nodes) {
      if (node.op === 'conv' || node.op === 'dense') {
        const inQuant = quantOf.get(node.input);
        if (!inQuant) throw new Error(`${node.name}: input ${node.input} is not produced before it`);
        const biasQ = tf.tensor1d(Float32Array.from(quantizeBias(node.bias, biasScales(inQuant.scale, node.weightScale))));
        const multiplier = tf.tensor1d(multipliers(inQuant.scale, node.weightScale, node.outQuant.scale));
        this.tensors.push(biasQ, multiplier);
        if (node.op === 'conv') {
          const filter = tfjsFilter(node);
          this.tensors.push(filter);
          const [lo, hi] = outputBounds(node);
          this.convs.set(node.name, { node, filter, biasQ, multiplier, lo, hi });
        } else {
          // [out, in] -> [in, out] for x @ W.
          const w = new Float32Array(node.weightInt8.length);
          for (let o = 0; o < node.outFeatures; o++) {
            for (let i = 0; i < node.inFeatures; i++) w[i * node.outFeatures + o] = node.weightInt8[o * node.inFeatures + i]!;
          }
          const weight = tf.tensor2d(w, [node.inFeatures, node.outFeatures]);
          this.tensors.push(weight);
          this.dense = { node, weight, biasQ, multiplier };
        }
      }
      quantOf.set(node.output, node.outQuant);
    }
  }

  /**
   * Dequantized logits [N, classes] for normalized NHWC images (the caller keeps `x`).
   *
   * Runs layer by layer: each node's intermediates live in their own tidy, and an activation is
   * disposed as soon as its last consumer has run. Holding every activation until the end (one
   * outer tidy) needed about 140 MB per 224 px image for MobileNetV2 1.0 and aborted the 4 GB wasm
   * heap at 32 images; layer by layer, peak memory is a few activations wide.
   */
  run(x: tf.Tensor4D): tf.Tensor2D {
    const g = this.graph;
    const inQ = g.input.quant;
    const uses = consumerCounts(g);
    const acts = new Map<string, IntAct>([
      [g.input.name, { centered: tf.tidy(() => requantize(tf.div(x, f32(inQ.scale)), inQ.zeroPoint, 0, 255)), quant: inQ }],
    ]);
    const get = (name: string) => acts.get(name)!;
    const release = (name: string) => {
      const left = (uses.get(name) ?? 0) - 1;
      uses.set(name, left);
      if (left <= 0 && name !== g.output) {
        acts.get(name)?.centered.dispose();
        acts.delete(name);
      }
    };
    try {
      for (const node of g.nodes) {
        const centered = tf.tidy(() => this.runNode(node, get));
        acts.set(node.output, { centered, quant: node.outQuant });
        for (const input of node.op === 'add' ? node.inputs : [node.input]) release(input);
      }
      const out = get(g.output);
      return tf.tidy(() => tf.mul<tf.Tensor2D>(out.centered, f32(out.quant.scale)));
    } finally {
      for (const a of acts.values()) a.centered.dispose();
    }
  }

  /** One node's output activation (integers minus its zero point). */
  private runNode(node: QuantNode, get: (name: string) => IntAct): tf.Tensor {
    switch (node.op) {
      case 'conv': {
        const p = this.convs.get(node.name)!;
        const input = get(node.input).centered as tf.Tensor4D;
        const [pt, pl, pb, pr] = node.pads;
        const pad =
          pt === pl && pt === pb && pt === pr
            ? pt
            : ([
                [0, 0],
                [pt, pb],
                [pl, pr],
                [0, 0],
              ] as [[number, number], [number, number], [number, number], [number, number]]);
        const stride: [number, number] = node.strides;
        const acc =
          node.group > 1
            ? tf.depthwiseConv2d(input, p.filter, stride, pad === 0 ? 'valid' : pad)
            : tf.conv2d(input, p.filter, stride, pad === 0 ? 'valid' : pad);
        return qatOps().requantize(acc, p.biasQ, p.multiplier, node.outQuant.zeroPoint, p.lo, p.hi);
      }
      case 'add': {
        const a = get(node.inputs[0]);
        const b = get(node.inputs[1]);
        return qatOps().qlinearAdd(a.centered, a.quant, b.centered, b.quant, node.outQuant);
      }
      case 'globalAvgPool': {
        const x4 = get(node.input);
        const [, h, w] = x4.centered.shape as number[];
        const m = f32(f32(x4.quant.scale) / f32(f32(node.outQuant.scale) * h * w));
        const sum = tf.sum(x4.centered, [1, 2]);
        return requantize(tf.mul(sum, m), node.outQuant.zeroPoint, 0, 255);
      }
      case 'dense': {
        const p = this.dense!;
        const input = get(node.input).centered as tf.Tensor2D;
        const real = tf.mul(tf.add(tf.matMul(input, p.weight), p.biasQ), p.multiplier);
        return requantize(real, node.outQuant.zeroPoint, 0, 255);
      }
    }
  }

  dispose(): void {
    for (const t of this.tensors) t.dispose();
    this.tensors.length = 0;
  }
}
