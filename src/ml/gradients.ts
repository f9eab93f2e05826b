// Gradients for the kernels the training graph uses. tfjs-core's Node bundle ships no gradient
// definitions (the full @tensorflow/tfjs package registers them, and we do not install it), and
// its ESM `dist/register_all_gradients.js` uses extensionless imports that plain Node cannot load.
// So we register the few we need, written after tfjs-core 4.22's own (gradients/*_grad.ts), through
// the public registry, and only where none is registered yet: whoever registered one first (tfjs
// itself, or the wasm-training module) wins.
// Imports tfjs-core directly: ./tf.js imports this module.
import * as tf from '@tensorflow/tfjs-core';

type Tensor = tf.Tensor;
type NamedAttrMap = Record<string, unknown>;
type GradFunc = (dy: Tensor, saved: Tensor[], attrs: NamedAttrMap) => Record<string, () => Tensor>;

/** Sum a broadcast gradient back down to the input's shape. */
function unbroadcast(g: Tensor, shape: number[]): Tensor {
  const axes = tf.broadcast_util.getReductionAxes(shape, g.shape);
  return tf.reshape(axes.length ? tf.sum(g, axes) : g, shape);
}

const run = (kernel: string, inputs: Record<string, Tensor>, attrs: NamedAttrMap): Tensor => tf.engine().runKernel<Tensor>(kernel, inputs, attrs as never);

const reduceGrad =
  (mean: boolean): GradFunc =>
  (dy, [x], attrs) => ({
    x: () => {
      const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
      const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const size = axes.reduce((a, i) => a * x.shape[i], 1);
      const g = tf.mul(tf.reshape(dy, kept), tf.ones(x.shape));
      return mean ? tf.div(g, size) : g;
    },
  });

const GRADS: Array<{ kernelName: string; inputsToSave?: string[]; outputsToSave?: boolean[]; gradFunc: GradFunc }> = [
  {
    kernelName: 'Add',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({ a: () => unbroadcast(dy, a.shape), b: () => unbroadcast(dy, b.shape) }),
  },
  {
    kernelName: 'Sub',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({ a: () => unbroadcast(dy, a.shape), b: () => unbroadcast(tf.neg(dy), b.shape) }),
  },
  {
    kernelName: 'Multiply',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.mul(dy, tf.cast(b, 'float32')), a.shape),
      b: () => unbroadcast(tf.mul(dy, tf.cast(a, 'float32')), b.shape),
    }),
  },
  {
    kernelName: 'RealDiv',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.div(dy, b), a.shape),
      b: () => unbroadcast(tf.neg(tf.div(tf.mul(dy, a), tf.square(b))), b.shape),
    }),
  },
  { kernelName: 'Neg', gradFunc: (dy) => ({ x: () => tf.neg(dy) }) },
  { kernelName: 'Identity', gradFunc: (dy) => ({ x: () => tf.clone(dy) }) },
  { kernelName: 'Cast', gradFunc: (dy) => ({ x: () => tf.clone(dy) }) },
  { kernelName: 'Square', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy, tf.mul(x, 2)) }) },
  {
    kernelName: 'Rsqrt',
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({ x: () => tf.neg(tf.div(dy, tf.mul(tf.pow(x, 1.5), 2))) }),
  },
  { kernelName: 'Reshape', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.reshape(dy, x.shape) }) },
  { kernelName: 'Mean', inputsToSave: ['x'], gradFunc: reduceGrad(true) },
  { kernelName: 'Sum', inputsToSave: ['x'], gradFunc: reduceGrad(false) },
  {
    kernelName: 'Relu6',
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({
      x: () => tf.mul(dy, tf.cast(tf.logicalAnd(tf.greater(x, 0), tf.lessEqual(x, 6)), 'float32')),
    }),
  },
  {
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b], attrs) => {
      const ta = attrs.transposeA as boolean;
      const tb = attrs.transposeB as boolean;
      if (!ta && !tb) return { a: () => tf.matMul(dy, b, false, true), b: () => tf.matMul(a, dy, true, false) };
      if (!ta && tb) return { a: () => tf.matMul(dy, b, false, false), b: () => tf.matMul(dy, a, true, false) };
      if (ta && !tb) return { a: () => tf.matMul(b, dy, false, true), b: () => tf.matMul(a, dy, false, false) };
      return { a: () => tf.matMul(b, dy, true, true), b: () => tf.matMul(dy, a, true, true) };
    },
  },
  {
    kernelName: 'Conv2D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, [x, filter], attrs) => {
      const { strides, pad, dataFormat, dimRoundingMode } = attrs;
      if (tf.getBackend() === 'cpu' && isPointwise(filter.shape, strides, pad, dataFormat)) {
        // A 1x1 stride-1 conv is a matrix product over N*H*W rows. The cpu backend's
        // Conv2DBackpropFilter is a naive loop (the largest cost of a cpu step); its matMul is
        // blocked, ~5x faster here. Other backends keep their own (tuned) conv gradient kernels.
        const [, , cin, cout] = filter.shape as [number, number, number, number];
        return {
          x: () => tf.reshape(tf.matMul(tf.reshape(dy, [-1, cout]), tf.reshape(filter, [cin, cout]), false, true), x.shape),
          filter: () => tf.reshape(tf.matMul(tf.reshape(x, [-1, cin]), tf.reshape(dy, [-1, cout]), true, false), filter.shape),
        };
      }
      return {
        x: () => run('Conv2DBackpropInput', { dy, filter: filter }, { strides, pad, dataFormat, dimRoundingMode, inputShape: x.shape }),
        filter: () => run('Conv2DBackpropFilter', { x: x, dy }, { strides, pad, dataFormat, dimRoundingMode, filterShape: filter.shape }),
      };
    },
  },
  {
    kernelName: 'DepthwiseConv2dNative',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, [x, filter], attrs) => {
      const { strides, pad, dimRoundingMode } = attrs;
      const dilations = attrs.dilations ?? [1, 1];
      return {
        x: () => run('DepthwiseConv2dNativeBackpropInput', { dy, filter: filter }, { strides, pad, dimRoundingMode, dilations, inputShape: x.shape }),
        filter: () => run('DepthwiseConv2dNativeBackpropFilter', { x: x, dy }, { strides, pad, dimRoundingMode, dilations, filterShape: filter.shape }),
      };
    },
  },
];

function isPointwise(fshape: number[], strides: unknown, pad: unknown, dataFormat: unknown): boolean {
  const st = Array.isArray(strides) ? strides : [strides, strides];
  return (
    fshape[0] === 1 && fshape[1] === 1 && st[0] === 1 && st[1] === 1 && (pad === 'valid' || pad === 0 || pad === 'same') && (dataFormat ?? 'NHWC') === 'NHWC'
  );
}

let done = false;

/** Registers the missing gradients (idempotent). Called by ./tf.js on import. */
export function registerTrainingGradients(): void {
  if (done) return;
  for (const g of GRADS) {
    if (tf.getGradient(g.kernelName) == null) tf.registerGradient(g as never);
  }
  done = true;
}
