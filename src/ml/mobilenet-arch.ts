// MobileNetV2's architecture as data: the stage table and the layer list it expands to, for given
// width, input size and classes. Pure (no tfjs), so the API can size a job from its config
// (src/jobs/job-admission.ts) without loading the ML stack; mobilenet-v2.ts builds the network
// from this list.
import type { ConvKind } from './conv-bn-fold.js';

export interface ConvSpec {
  name: string;
  kind: ConvKind;
  inC: number;
  outC: number;
  k: number;
  stride: number;
  relu6: boolean;
}

export interface BlockSpec {
  name: string;
  expand?: ConvSpec;
  dw: ConvSpec;
  project: ConvSpec;
  residual: boolean;
}

export interface ArchSpec {
  inputSize: number;
  numClasses: number;
  widthMultiplier: number;
  /** True when the stem and the first stride-2 stage run at stride 1 (inputs below 64). */
  smallInputStem: boolean;
  dropout: number;
  stem: ConvSpec;
  blocks: BlockSpec[];
  head: ConvSpec;
  dense: { name: string; inF: number; outF: number };
}

export interface ArchOptions {
  inputSize: number;
  numClasses: number;
  widthMultiplier: number;
  smallInputStem: 'auto' | 'on' | 'off';
  dropout: number;
}

/** The paper's stage table: expansion t, channels c, repeats n, first stride s. */
export const STAGES: ReadonlyArray<readonly [number, number, number, number]> = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

/** Channels rounded to a multiple of `divisor`, never more than 10% below the request (TF's rule). */
export function makeDivisible(v: number, divisor = 8): number {
  const n = Math.max(divisor, Math.floor(v + divisor / 2) - (Math.floor(v + divisor / 2) % divisor));
  return n < 0.9 * v ? n + divisor : n;
}

export function buildArch(o: ArchOptions): ArchSpec {
  const w = o.widthMultiplier;
  // A 32x32 input through the paper's stride-32 network ends at 1x1 after the fourth stage and
  // leaves the last 7 blocks nothing spatial to work on. CIFAR ports (e.g. kuangliu/pytorch-cifar)
  // run the stem and the first stride-2 stage (c=24) at stride 1: overall stride 8, 4x4 at the end.
  const small = o.smallInputStem === 'on' || (o.smallInputStem === 'auto' && o.inputSize < 64);
  const conv = (name: string, kind: ConvKind, inC: number, outC: number, k: number, stride: number, relu6: boolean): ConvSpec => ({
    name,
    kind,
    inC,
    outC,
    k,
    stride,
    relu6,
  });
  let c = makeDivisible(32 * w);
  const stem = conv('stem', 'conv', 3, c, 3, small ? 1 : 2, true);
  const blocks: BlockSpec[] = [];
  let firstStride2Seen = false;
  STAGES.forEach(([t, ch, n, s]) => {
    const outC = makeDivisible(ch * w);
    for (let i = 0; i < n; i++) {
      let stride = i === 0 ? s : 1;
      if (stride === 2 && !firstStride2Seen) {
        firstStride2Seen = true;
        if (small) stride = 1;
      }
      const name = `block${blocks.length + 1}`;
      const hidden = Math.round(c * t);
      blocks.push({
        name,
        expand: t === 1 ? undefined : conv(`${name}/expand`, 'conv', c, hidden, 1, 1, true),
        dw: conv(`${name}/dw`, 'dw', hidden, hidden, 3, stride, true),
        project: conv(`${name}/project`, 'conv', hidden, outC, 1, 1, false),
        residual: stride === 1 && c === outC,
      });
      c = outC;
    }
  });
  const last = w > 1 ? makeDivisible(1280 * w) : 1280;
  const head = conv('head', 'conv', c, last, 1, 1, true);
  return {
    inputSize: o.inputSize,
    numClasses: o.numClasses,
    widthMultiplier: w,
    smallInputStem: small,
    dropout: o.dropout,
    stem,
    blocks,
    head,
    dense: { name: 'classifier', inF: last, outF: o.numClasses },
  };
}

/** Every conv in forward order. */
export function allConvs(arch: ArchSpec): ConvSpec[] {
  const out = [arch.stem];
  for (const b of arch.blocks) {
    if (b.expand) out.push(b.expand);
    out.push(b.dw, b.project);
  }
  out.push(arch.head);
  return out;
}

/** One layer of the forward pass with the tensors it reads and writes (the exported graphs' names). */
export type Layer =
  | { op: 'conv'; conv: ConvSpec; input: string; output: string }
  | { op: 'add'; name: string; inputs: [string, string]; output: string }
  | { op: 'globalAvgPool'; input: string; output: string }
  | { op: 'dense'; input: string; output: string };

/** The forward pass as layers, in order, from tensor 'input' to 'logits': what every graph IR walks. */
export function graphLayers(arch: ArchSpec): Layer[] {
  const out: Layer[] = [];
  let cur = 'input';
  const conv = (c: ConvSpec) => {
    out.push({ op: 'conv', conv: c, input: cur, output: c.name });
    cur = c.name;
  };
  conv(arch.stem);
  for (const b of arch.blocks) {
    const blockIn = cur;
    if (b.expand) conv(b.expand);
    conv(b.dw);
    conv(b.project);
    if (b.residual) {
      const name = `${b.name}/add`;
      out.push({ op: 'add', name, inputs: [blockIn, cur], output: name });
      cur = name;
    }
  }
  conv(arch.head);
  out.push({ op: 'globalAvgPool', input: cur, output: 'pool' });
  out.push({ op: 'dense', input: 'pool', output: 'logits' });
  return out;
}

/**
 * Multiply-adds of one image's forward pass through the convolutions (the dense layer is
 * negligible): the work a training step does per image, about three times this with the backward
 * pass. Spatial sizes follow the strides with 'same' padding, as the network runs.
 */
export function forwardMacsPerImage(arch: ArchSpec): number {
  let side = arch.inputSize;
  let macs = 0;
  for (const c of allConvs(arch)) {
    side = Math.ceil(side / c.stride);
    const perPixel = c.kind === 'dw' ? c.k * c.k * c.outC : c.k * c.k * c.inC * c.outC;
    macs += side * side * perPixel;
  }
  return macs;
}
