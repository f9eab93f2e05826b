// A MobileNetV2-shaped QAT training step written with the same tfjs ops the engine uses
// (src/ml/mobilenet-v2.ts, conv-bn-fold.ts, fake-quant.ts): folded conv-BN with batch statistics,
// ReLU6, per-channel weight fake quant, per-tensor activation fake quant with a straight-through
// gradient, residual adds, global mean pool, dense, softmax cross-entropy. It exists so the wasm
// training kernels can be checked and timed apart from the engine's model code (it shares only the
// stage table and fake quant).
import * as tf from '@tensorflow/tfjs-core';
import { fakeQuantAct } from '../src/ml/fake-quant.js';
import { makeDivisible, STAGES } from '../src/ml/mobilenet-arch.js';

interface Conv {
  name: string;
  dw: boolean;
  inC: number;
  outC: number;
  k: number;
  stride: number;
  relu6: boolean;
}
interface Block {
  expand?: Conv;
  dw: Conv;
  project: Conv;
  residual: boolean;
}

export interface MiniArch {
  stem: Conv;
  blocks: Block[];
  head: Conv;
  classes: number;
  size: number;
}

/**
 * MobileNetV2 layout. `smallStem` (default: inputs below 64 px, as the engine's 'auto') runs the
 * stem and the first stride-2 stage at stride 1 (overall stride 8, as CIFAR ports do); false gives
 * torchvision's layout (overall stride 32).
 */
export function mobilenetArch(width: number, size: number, classes: number, maxBlocks = Infinity, smallStem = size < 64): MiniArch {
  const small = smallStem;
  let c = makeDivisible(32 * width);
  const stem: Conv = { name: 'stem', dw: false, inC: 3, outC: c, k: 3, stride: small ? 1 : 2, relu6: true };
  const blocks: Block[] = [];
  let seen2 = false;
  for (const [t, ch, n, s] of STAGES) {
    const outC = makeDivisible(ch * width);
    for (let i = 0; i < n && blocks.length < maxBlocks; i++) {
      let stride = i === 0 ? s : 1;
      if (stride === 2 && !seen2) {
        seen2 = true;
        if (small) stride = 1;
      }
      const hidden = Math.round(c * t);
      const name = `b${blocks.length}`;
      blocks.push({
        expand: t === 1 ? undefined : { name: `${name}e`, dw: false, inC: c, outC: hidden, k: 1, stride: 1, relu6: true },
        dw: { name: `${name}d`, dw: true, inC: hidden, outC: hidden, k: 3, stride, relu6: true },
        project: { name: `${name}p`, dw: false, inC: hidden, outC, k: 1, stride: 1, relu6: false },
        residual: stride === 1 && c === outC,
      });
      c = outC;
    }
  }
  const last = width > 1 ? makeDivisible(1280 * width) : 1280;
  return { stem, blocks, head: { name: 'head', dw: false, inC: c, outC: last, k: 1, stride: 1, relu6: true }, classes, size };
}

function convs(a: MiniArch): Conv[] {
  const out = [a.stem];
  for (const b of a.blocks) {
    if (b.expand) out.push(b.expand);
    out.push(b.dw, b.project);
  }
  out.push(a.head);
  return out;
}

/** Deterministic parameters (a fixed LCG), so cpu and wasm runs start from identical weights. */
export function initParams(a: MiniArch, seed = 1): Map<string, tf.Variable> {
  let s = seed >>> 0;
  const rnd = (n: number, std: number) => {
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      v[i] = (s / 4294967296 - 0.5) * 3.4641 * std;
    }
    return v;
  };
  const p = new Map<string, tf.Variable>();
  for (const c of convs(a)) {
    const shape = c.dw ? [c.k, c.k, c.inC, 1] : [c.k, c.k, c.inC, c.outC];
    const fan = c.dw ? c.k * c.k : c.k * c.k * c.outC;
    p.set(
      `${c.name}/w`,
      tf.variable(
        tf.tensor(
          rnd(
            shape.reduce((x, y) => x * y),
            Math.sqrt(2 / fan),
          ),
          shape,
        ),
      ),
    );
    p.set(`${c.name}/gamma`, tf.variable(tf.ones([c.outC])));
    p.set(`${c.name}/beta`, tf.variable(tf.zeros([c.outC])));
  }
  const last = a.head.outC;
  p.set('dense/w', tf.variable(tf.tensor(rnd(last * a.classes, 0.05), [last, a.classes])));
  p.set('dense/b', tf.variable(tf.zeros([a.classes])));
  return p;
}

export interface QatOps {
  /** Per-tensor uint8 fake quant with a straight-through gradient (zero outside the range). */
  fakeQuantAct(x: tf.Tensor, scale: number, zeroPoint: number): tf.Tensor;
  /** Per-channel symmetric int8 weight fake quant, identity gradient. */
  fakeQuantWeight(w: tf.Tensor, channelAxis: number): tf.Tensor;
  /** Training batch norm over all axes but the last. */
  batchNormTrain(z: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor };
}

/** The engine's fake-quant formulation with stock tfjs ops (src/ml/fake-quant.ts). */
export const stockQatOps: QatOps = {
  fakeQuantAct: (x, scale, zeroPoint) => fakeQuantAct(x, { scale, zeroPoint }),
  batchNormTrain(z, gamma, beta, eps) {
    const c = z.shape[z.shape.length - 1];
    const flat = tf.reshape(z, [-1, c]);
    const mean = tf.mean(flat, 0);
    const variance = tf.mean(tf.square(tf.sub(flat, mean)), 0);
    const k = tf.mul(gamma, tf.rsqrt(tf.add(variance, eps)));
    return { y: tf.add(tf.mul(z, k), tf.sub(beta, tf.mul(mean, k))), mean, variance };
  },
  fakeQuantWeight(w, channelAxis) {
    const op = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
      save([input]);
      const value = tf.tidy(() => {
        const axes = input.shape.map((_, i) => i).filter((i) => i !== channelAxis);
        const sc = tf.div(tf.maximum(tf.max(tf.abs(input), axes), 1e-8 * 127), 127);
        const sb = tf.reshape(
          sc,
          input.shape.map((d, i) => (i === channelAxis ? d : 1)),
        );
        return tf.mul(tf.clipByValue(tf.round(tf.div(input, sb)), -127, 127), sb);
      });
      return { value, gradFunc: (dy: tf.Tensor) => tf.clone(dy) };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    return op(w);
  },
};

export interface StepOptions {
  fakeQuant: boolean;
  ops?: QatOps;
}

/** Loss of one batch; call inside tf.variableGrads / tf.grads. */
export function forwardLoss(a: MiniArch, p: Map<string, tf.Variable>, x: tf.Tensor4D, labels: tf.Tensor2D, o: StepOptions): tf.Scalar {
  const ops = o.ops ?? stockQatOps;
  // Fixed activation ranges keep runs deterministic; the engine's EMA ranges only change the numbers.
  const qa = (t: tf.Tensor, lo: number, hi: number) => {
    if (!o.fakeQuant) return t;
    const scale = (hi - lo) / 255;
    return ops.fakeQuantAct(t, scale, Math.round(-lo / scale));
  };
  const conv = (h: tf.Tensor4D, c: Conv) => {
    const wRaw = p.get(`${c.name}/w`)!;
    const w = (o.fakeQuant ? ops.fakeQuantWeight(wRaw, c.dw ? 2 : 3) : wRaw) as tf.Tensor4D;
    const pad = c.k === 1 ? 'valid' : (c.k - 1) / 2;
    const z = c.dw ? tf.depthwiseConv2d(h, w, c.stride, pad) : tf.conv2d(h, w, c.stride, pad);
    const y = ops.batchNormTrain(z, p.get(`${c.name}/gamma`)! as tf.Tensor1D, p.get(`${c.name}/beta`)! as tf.Tensor1D, 1e-3).y as tf.Tensor4D;
    return (c.relu6 ? qa(tf.relu6(y), 0, 6) : qa(y, -8, 8)) as tf.Tensor4D;
  };
  let h = qa(x, -1, 1) as tf.Tensor4D;
  h = conv(h, a.stem);
  for (const b of a.blocks) {
    let t = h;
    if (b.expand) t = conv(t, b.expand);
    t = conv(conv(t, b.dw), b.project);
    h = b.residual ? (qa(tf.add(h, t), -8, 8) as tf.Tensor4D) : t;
  }
  h = conv(h, a.head);
  const pooled = qa(tf.mean(h, [1, 2]), 0, 6) as tf.Tensor2D;
  const wd = p.get('dense/w')! as tf.Tensor2D;
  const logits = tf.add(tf.matMul(pooled, (o.fakeQuant ? ops.fakeQuantWeight(wd, 1) : wd) as tf.Tensor2D), p.get('dense/b')!);
  const logp = tf.logSoftmax(logits as tf.Tensor2D);
  return tf.neg(tf.mean(tf.sum(tf.mul(labels, logp), 1))) as tf.Scalar;
}

/** A deterministic batch: inputs in [-1, 1) and one-hot labels. */
export function makeBatch(a: MiniArch, batch: number, seed = 7): { x: tf.Tensor4D; labels: tf.Tensor2D } {
  let s = seed >>> 0;
  const n = batch * a.size * a.size * 3;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = (s / 4294967296) * 2 - 1;
  }
  const idx = Array.from({ length: batch }, (_, i) => (i * 7) % a.classes);
  return { x: tf.tensor4d(v, [batch, a.size, a.size, 3]), labels: tf.cast(tf.oneHot(tf.tensor1d(idx, 'int32'), a.classes), 'float32') as tf.Tensor2D };
}
