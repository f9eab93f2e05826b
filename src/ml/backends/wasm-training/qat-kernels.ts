// Fused QAT kernels (batch-norm training and fake quantization, forward and backward) for the
// 'wasm' and 'cpu' backends, with their gradients registered under custom kernel names. ops.ts is
// the public entry; it falls back to stock tfjs ops on any other backend.
import type { GradConfig, KernelConfig, KernelFunc, Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { cast, engine, getBackend, getKernel, lessEqual, mul, step } from '@tensorflow/tfjs-core';
import { f32View, type WasmBackendLike } from './heap.js';
import {
  bnTrainBackward,
  bnTrainForward,
  fakeQuantBackward,
  fakeQuantForward,
  fakeQuantGradBounds,
  fakeQuantPerChannelForward,
  relu6Backward,
} from './qat-math.js';
import { WasmTrainingError } from './errors.js';
import { activeCollective } from '../../data-parallel/step-collective.js';
import { simdBnBackward, simdBnForward, simdFakeQuant, simdFakeQuantGrad, simdFakeQuantPerChannel, simdRelu6Grad } from './simd.js';

export const BN_TRAIN = 'QatBatchNormTrain';
export const BN_TRAIN_GRAD = 'QatBatchNormTrainGrad';
export const FAKE_QUANT = 'QatFakeQuant';
export const FAKE_QUANT_GRAD = 'QatFakeQuantGrad';
export const FAKE_QUANT_PER_CHANNEL = 'QatFakeQuantPerChannel';
export const RELU6_GRAD = 'QatRelu6Grad';

type Body = (ins: Float32Array[], outs: Float32Array[]) => void;
/** Optional wasm fast path on heap tensors; returns false to fall back to the JS body. */
type Fast = (be: WasmBackendLike, outs: TensorInfo[]) => boolean;

interface CpuBackendLike {
  data: { get(dataId: object): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: string, values: Float32Array): TensorInfo;
}

function assertFloat32(op: string, ts: TensorInfo[]): void {
  for (const t of ts) {
    if (t.dtype !== 'float32') throw new WasmTrainingError('WASM_TRAINING_UNSUPPORTED', `${op}: only float32 is supported, got ${t.dtype}.`);
  }
}

const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);

/** Wasm: allocate every output first (allocation may move the heap), then take views. */
function runWasm(op: string, backend: unknown, ins: TensorInfo[], outShapes: number[][], body: Body, fast?: Fast): TensorInfo[] {
  assertFloat32(op, ins);
  const be = backend as WasmBackendLike;
  const outs = outShapes.map((s) => be.makeOutput(s, 'float32'));
  if (fast?.(be, outs)) return outs;
  body(
    ins.map((t) => f32View(be, t)),
    outs.map((t) => f32View(be, t)),
  );
  return outs;
}

function runCpu(op: string, backend: unknown, ins: TensorInfo[], outShapes: number[][], body: Body, _fast?: Fast): TensorInfo[] {
  assertFloat32(op, ins);
  const be = backend as CpuBackendLike;
  const outVals = outShapes.map((s) => new Float32Array(size(s)));
  body(
    ins.map((t) => be.data.get(t.dataId).values),
    outVals,
  );
  return outShapes.map((s, i) => be.makeTensorInfo(s, 'float32', outVals[i]));
}

type Runner = typeof runWasm;

interface Args {
  inputs: Record<string, TensorInfo>;
  backend: unknown;
  attrs: Record<string, number>;
}

function channelsOf(x: TensorInfo): number {
  return x.shape[x.shape.length - 1];
}

const kernels: Record<string, (run: Runner) => (a: Args) => TensorInfo | TensorInfo[]> = {
  [BN_TRAIN]:
    (run) =>
    ({ inputs: { x, gamma, beta }, backend, attrs }) => {
      const c = channelsOf(x);
      if (gamma.shape.length !== 1 || gamma.shape[0] !== c || beta.shape[0] !== c) {
        throw new WasmTrainingError('WASM_TRAINING_BAD_INPUT', `${BN_TRAIN}: gamma/beta must be [${c}] for input ${x.shape}.`);
      }
      return run(
        BN_TRAIN,
        backend,
        [x, gamma, beta],
        [x.shape, [c], [c]],
        ([xv, g, b], [y, m, v]) => bnTrainForward(xv, g, b, attrs.epsilon, y, m, v, activeCollective()),
        (be, [y, m, v]) => simdBnForward(be, x, gamma, beta, attrs.epsilon, y, m, v),
      );
    },
  [BN_TRAIN_GRAD]:
    (run) =>
    ({ inputs: { dy, x, gamma, mean, variance, dMean, dVariance }, backend, attrs }) => {
      const c = channelsOf(x);
      return run(
        BN_TRAIN_GRAD,
        backend,
        [dy, x, gamma, mean, variance, dMean, dVariance],
        [x.shape, [c], [c]],
        ([g, xv, ga, m, v, dm, dv], [dx, dg, db]) => bnTrainBackward(g, xv, ga, m, v, dm, dv, attrs.epsilon, dx, dg, db, activeCollective()),
        (be, [dx, dg, db]) => simdBnBackward(be, dy, x, gamma, mean, variance, dMean, dVariance, attrs.epsilon, dx, dg, db),
      );
    },
  [FAKE_QUANT]:
    (run) =>
    ({ inputs: { x }, backend, attrs }) =>
      run(
        FAKE_QUANT,
        backend,
        [x],
        [x.shape],
        ([xv], [y]) => fakeQuantForward(xv, attrs.scale, attrs.qmin, attrs.qmax, y),
        (be, [y]) => simdFakeQuant(be, x, y, attrs.scale, attrs.qmin, attrs.qmax),
      )[0],
  [FAKE_QUANT_GRAD]:
    (run) =>
    ({ inputs: { dy, x }, backend, attrs }) => {
      const [lo, hi] = fakeQuantGradBounds(attrs.scale, attrs.qmin, attrs.qmax, attrs.relu6 === 1);
      return run(
        FAKE_QUANT_GRAD,
        backend,
        [dy, x],
        [x.shape],
        ([g, xv], [dx]) => fakeQuantBackward(g, xv, lo, hi, dx),
        (be, [dx]) => simdFakeQuantGrad(be, dy, x, dx, lo, hi),
      )[0];
    },
  [RELU6_GRAD]:
    (run) =>
    ({ inputs: { dy, x }, backend }) =>
      run(
        RELU6_GRAD,
        backend,
        [dy, x],
        [x.shape],
        ([g, xv], [dx]) => relu6Backward(g, xv, dx),
        (be, [dx]) => simdRelu6Grad(be, dy, x, dx),
      )[0],
  [FAKE_QUANT_PER_CHANNEL]:
    (run) =>
    ({ inputs: { x }, backend, attrs }) => {
      const c = attrs.channels;
      return run(
        FAKE_QUANT_PER_CHANNEL,
        backend,
        [x],
        [x.shape, [c]],
        ([xv], [y, s]) => fakeQuantPerChannelForward(xv, c, attrs.qmax, y, s),
        (be, [y, s]) => simdFakeQuantPerChannel(be, x, c, attrs.qmax, y, s),
      );
    },
};

function configs(backendName: 'wasm' | 'cpu'): KernelConfig[] {
  const run = backendName === 'wasm' ? runWasm : runCpu;
  return Object.entries(kernels).map(([kernelName, make]) => ({
    kernelName,
    backendName,
    kernelFunc: make(run) as unknown as KernelFunc,
  }));
}

export const qatWasmKernelConfigs = (): KernelConfig[] => configs('wasm');
export const qatCpuKernelConfigs = (): KernelConfig[] => configs('cpu');

function runKernel(name: string, inputs: Record<string, Tensor>, attrs: Record<string, number>): Tensor | Tensor[] {
  return engine().runKernel<Tensor | Tensor[]>(name, inputs, attrs);
}

/**
 * Relu6's gradient with one fused kernel instead of tfjs's LessEqual, Step, Multiply, Cast and
 * Multiply, on backends that have it; the stock gradient everywhere else.
 */
export function relu6GradConfig(stock: GradConfig | undefined): GradConfig {
  return {
    kernelName: 'Relu6',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const g = dy as Tensor;
      const x = saved[0];
      if (getKernel(RELU6_GRAD, getBackend()) != null && g.dtype === 'float32' && x.dtype === 'float32') {
        return { x: () => runKernel(RELU6_GRAD, { dy: g, x }, {}) as Tensor };
      }
      if (stock) return stock.gradFunc(dy, saved, attrs);
      // tfjs-core's own Relu6 gradient (gradients/Relu6_grad.ts).
      return { x: () => mul(g, cast(mul(lessEqual(x, 6), step(x)), 'float32')) };
    },
  };
}

/** Gradients of the fused forward kernels; they run the fused backward kernels. */
export const qatGradConfigs: GradConfig[] = [
  {
    kernelName: BN_TRAIN,
    inputsToSave: ['x', 'gamma'],
    outputsToSave: [false, true, true],
    gradFunc: (dys, saved, attrs) => {
      const [dy, dMean, dVariance] = dys as Tensor[];
      const [x, gamma, mean, variance] = saved;
      // One kernel yields all three gradients. Run it here, not inside a thunk: the tape runs each
      // thunk in its own tidy, which would dispose the other two outputs.
      const [dx, dGamma, dBeta] = runKernel(BN_TRAIN_GRAD, { dy, x, gamma, mean, variance, dMean, dVariance }, attrs as Record<string, number>) as Tensor[];
      return { x: () => dx, gamma: () => dGamma, beta: () => dBeta };
    },
  },
  {
    kernelName: FAKE_QUANT,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => ({
      x: () => runKernel(FAKE_QUANT_GRAD, { dy: dy as Tensor, x: saved[0] }, attrs as Record<string, number>) as Tensor,
    }),
  },
  {
    // Per-channel weight quantization never clamps (the range is the tensor's own min/max), so the
    // straight-through gradient is the identity. The scales output carries no gradient.
    kernelName: FAKE_QUANT_PER_CHANNEL,
    gradFunc: (dys) => ({ x: () => engine().runKernel<Tensor>('Identity', { x: (dys as Tensor[])[0] }) }),
  },
];
