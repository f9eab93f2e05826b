// MobileNetV2 (Sandler et al. 2018) built from plain tf.Variables, with QAT built in: every conv is
// a folded conv-BN (conv-bn-fold.ts), and activations are fake-quantized exactly where the int8
// graph quantizes them (the `q(...)` calls below; their names are the tensor names of the exported
// QuantGraph). The architecture is data (`buildArch`), so the trainer, the checkpoint and the
// export all walk the same list.
import { tf } from './tf.js';
import { actQParams, weightScales, type ActQParams } from './fake-quant.js';
import { qatOps, wholeBatchRange, type BnAct, type Range } from './qat-ops.js';
import { foldedConvBn, quantizeBias, type BnState } from './conv-bn-fold.js';
import { RangeTracker } from './ema-range.js';
import { weightQmax, type WeightBits } from './quant-graph.js';
import { hashSeed } from '../data/rng.js';

export * from './mobilenet-arch.js';
import { allConvs, type ArchSpec, type ConvSpec } from './mobilenet-arch.js';

export interface ForwardMode {
  training: boolean;
  /** Fake-quantize weights and activations. */
  fakeQuant: boolean;
  /** BN batch statistics (and running-stat updates); false = frozen/eval running statistics. */
  bnBatchStats: boolean;
  /** Update the activation range EMAs from this batch. */
  observeRanges: boolean;
  /** Seed for this step's dropout mask (training only). */
  dropoutSeed?: number;
  /** BN running-stat momentum for this step (training with batch statistics only). */
  bnMomentum?: number;
  /**
   * This forward sees rows [offset, offset + n) of a batch of `total` split over threads; dropout
   * then draws the whole batch's mask and keeps these rows, as one thread would.
   */
  rows?: { offset: number; total: number };
}

let modelCounter = 0;

/** Parameter kinds, for weight decay (only conv/dense weights decay) and checkpoint grouping. */
export type ParamRole = 'weight' | 'gamma' | 'beta' | 'bias' | 'runMean' | 'runVar';

export interface ParamEntry {
  name: string;
  role: ParamRole;
  variable: tf.Variable;
  trainable: boolean;
}

export class MobileNetV2 {
  readonly params = new Map<string, ParamEntry>();
  readonly ranges: RangeTracker;
  private readonly uid = ++modelCounter;
  private readonly relu6Names: Set<string>;
  /** The fake-quant weight grid is [-weightQmax, weightQmax] (127 for 8 bits, 63 for 7). */
  readonly weightQmax: number;

  /** `weightBits`: the config's quantization.weightBits; 8 where none is given (older checkpoints). */
  constructor(
    readonly arch: ArchSpec,
    emaDecay: number,
    seed: number,
    readonly weightBits: WeightBits = 8,
  ) {
    this.weightQmax = weightQmax(weightBits);
    this.ranges = new RangeTracker(emaDecay);
    this.relu6Names = relu6Points(arch);
    let i = 0;
    const init = (shape: number[], std: number) => tf.randomNormal(shape, 0, std, 'float32', hashSeed(seed, 0x1417, i++));
    for (const c of allConvs(arch)) {
      // Kaiming normal (He et al. 2015), fan-out mode as torchvision; depthwise fans are per channel.
      const shape = c.kind === 'conv' ? [c.k, c.k, c.inC, c.outC] : [c.k, c.k, c.inC, 1];
      const fan = c.kind === 'conv' ? c.k * c.k * c.outC : c.k * c.k;
      this.add(`${c.name}/w`, 'weight', init(shape, Math.sqrt(2 / fan)), true);
      this.add(`${c.name}/gamma`, 'gamma', tf.ones([c.outC]), true);
      this.add(`${c.name}/beta`, 'beta', tf.zeros([c.outC]), true);
      this.add(`${c.name}/runMean`, 'runMean', tf.zeros([c.outC]), false);
      this.add(`${c.name}/runVar`, 'runVar', tf.ones([c.outC]), false);
    }
    const d = arch.dense;
    this.add(`${d.name}/w`, 'weight', init([d.inF, d.outF], 0.01), true);
    this.add(`${d.name}/b`, 'bias', tf.zeros([d.outF]), true);
  }

  private add(name: string, role: ParamRole, value: tf.Tensor, trainable: boolean): void {
    const variable = tf.variable(value, trainable, `m${this.uid}/${name}`);
    value.dispose();
    this.params.set(name, { name, role, variable, trainable });
  }

  v(name: string): tf.Variable {
    const p = this.params.get(name);
    if (!p) throw new Error(`no parameter ${name}`);
    return p.variable;
  }

  trainableVariables(): tf.Variable[] {
    return [...this.params.values()].filter((p) => p.trainable).map((p) => p.variable);
  }

  /** Quantization point names in forward order (the QuantGraph's activation tensors). */
  quantPoints(): string[] {
    const names = ['input', 'stem'];
    for (const b of this.arch.blocks) {
      if (b.expand) names.push(b.expand.name);
      names.push(b.dw.name, b.project.name);
      if (b.residual) names.push(`${b.name}/add`);
    }
    names.push('head', 'pool', 'logits');
    return names;
  }

  /** Activation quantization point: observe the range (training), then fake-quantize. */
  private q(name: string, x: tf.Tensor, mode: ForwardMode): tf.Tensor {
    // Split over threads: the range of the whole batch, so every replica's EMA stays the same.
    if (mode.observeRanges) this.ranges.observe(name, wholeBatchRange(x));
    if (!mode.fakeQuant) return x;
    const p = this.qparams(name, false);
    return qatOps().fakeQuantAct(x, p.scale, p.zeroPoint);
  }

  private qparams(name: string, relu6: boolean): ActQParams {
    const r = this.ranges.get(name);
    if (!r) throw new Error(`activation range ${name} was never observed; cannot fake-quantize`);
    return actQParams(r.min, r.max, relu6);
  }

  /** Input scale for bias rounding (evaluation with fake quant only). */
  private biasScale(input: string, mode: ForwardMode): number | undefined {
    return mode.fakeQuant && !mode.training ? this.qparams(input, this.relu6Names.has(input)).scale : undefined;
  }

  private conv(x: tf.Tensor4D, c: ConvSpec, mode: ForwardMode, input: string): tf.Tensor4D {
    const bn: BnState = {
      gamma: this.v(`${c.name}/gamma`),
      beta: this.v(`${c.name}/beta`),
      runMean: this.v(`${c.name}/runMean`),
      runVar: this.v(`${c.name}/runVar`),
    };
    const act = (r: Range | null): BnAct => {
      // The range of relu6(y) is y's clamped to [0, 6] (ReLU6 is monotone).
      if (r) this.ranges.observe(c.name, c.relu6 ? { min: clampRelu6(r.min), max: clampRelu6(r.max) } : r);
      return { relu6: c.relu6, quant: mode.fakeQuant ? this.qparams(c.name, c.relu6) : null };
    };
    return foldedConvBn(
      x,
      this.v(`${c.name}/w`),
      bn,
      {
        kind: c.kind,
        stride: c.stride,
        pad: (c.k - 1) / 2,
        quantizeWeights: mode.fakeQuant,
        weightQmax: this.weightQmax,
        batchStats: mode.bnBatchStats,
        runningMomentum: mode.bnMomentum,
        biasInputScale: this.biasScale(input, mode),
        observeRange: mode.observeRanges,
        inference: !mode.training,
      },
      act,
    );
  }

  /** Logits [N, classes]. Call inside tf.tidy (or a gradient function). */
  forward(input: tf.Tensor4D, mode: ForwardMode): tf.Tensor2D {
    // `cur` names the quantization point the current tensor came from (the conv's input grid).
    let x = this.q('input', input, mode) as tf.Tensor4D;
    let cur = 'input';
    const conv = (t: tf.Tensor4D, c: ConvSpec) => {
      const out = this.conv(t, c, mode, cur);
      cur = c.name;
      return out;
    };
    x = conv(x, this.arch.stem);
    for (const b of this.arch.blocks) {
      let h = x;
      if (b.expand) h = conv(h, b.expand);
      h = conv(h, b.dw);
      h = conv(h, b.project);
      if (b.residual) {
        h = this.q(`${b.name}/add`, tf.add(x, h), mode) as tf.Tensor4D;
        cur = `${b.name}/add`;
      }
      x = h;
    }
    x = conv(x, this.arch.head);
    let pooled = this.q('pool', tf.mean(x, [1, 2]), mode) as tf.Tensor2D;
    if (mode.training && this.arch.dropout > 0) {
      pooled = batchDropout(pooled, this.arch.dropout, mode.dropoutSeed, mode.rows);
    }
    const d = this.arch.dense;
    const wRaw = this.v(`${d.name}/w`);
    const w = (mode.fakeQuant ? qatOps().fakeQuantWeight(wRaw, 1, this.weightQmax) : wRaw) as tf.Tensor2D;
    let bias: tf.Tensor = this.v(`${d.name}/b`);
    const poolScale = this.biasScale('pool', mode);
    if (poolScale !== undefined) bias = quantizeBias(bias, tf.mul(weightScales(wRaw, 1, this.weightQmax), poolScale));
    const logits = tf.add<tf.Tensor2D>(tf.matMul(pooled, w), bias);
    return this.q('logits', logits, mode) as tf.Tensor2D;
  }

  dispose(): void {
    for (const p of this.params.values()) p.variable.dispose();
    this.params.clear();
  }
}

/**
 * tf.dropout, with the mask drawn for the whole batch when x is rows [offset, offset + n) of it:
 * the same mask rows one thread would have used (tf.dropout's own formula, so equal to it when x
 * is the whole batch).
 */
export function batchDropout(x: tf.Tensor2D, rate: number, seed: number | undefined, rows?: { offset: number; total: number }): tf.Tensor2D {
  if (!rows || (rows.offset === 0 && rows.total === x.shape[0])) return tf.dropout(x, rate, undefined, seed) as tf.Tensor2D;
  const keep = 1 - rate;
  const u = tf.slice(tf.randomUniform([rows.total, x.shape[1]], 0, 1, 'float32', seed), [rows.offset, 0], [x.shape[0], x.shape[1]]);
  return tf.mul(x, tf.div(tf.floor(tf.add(u, keep)), keep));
}

/** Names of the quantization points that are ReLU6 outputs (their grid stays inside [0, 6]). */
export function relu6Points(arch: ArchSpec): Set<string> {
  return new Set(
    allConvs(arch)
      .filter((c) => c.relu6)
      .map((c) => c.name),
  );
}

/** relu6 of one number (NaN stays NaN, as in a range of relu6 outputs). */
function clampRelu6(v: number): number {
  return Math.min(Math.max(v, 0), 6);
}
