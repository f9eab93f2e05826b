// Fused QAT kernels (batch-norm training and fake quantization, forward and backward) for the
// 'wasm' and 'cpu' backends, with their gradients registered under custom kernel names. ops.ts is
// the public entry; it falls back to stock tfjs ops on any other backend.
import type { GradConfig, KernelConfig, KernelFunc, Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { cast, engine, getBackend, getKernel, lessEqual, mul, step } from '@tensorflow/tfjs-core';
import { f32View, type WasmBackendLike } from './heap.js';
import {
  bnActApply,
  bnActBackward,
  bnStats,
  fakeQuantBackward,
  fakeQuantForward,
  bnActGradBounds,
  fakeQuantGradBounds,
  type BnActAttrs,
  fakeQuantPerChannelForward,
  relu6Backward,
  requantizeChannels,
} from './qat-math.js';
import { WasmTrainingError } from './errors.js';
import { activeCollective } from '../../data-parallel/step-collective.js';
import { qlinearAddCentered } from '../../qlinear-add.js';
import {
  simdQlinearAdd,
  simdBnActApply,
  simdBnActBackward,
  simdBnStats,
  simdFakeQuant,
  simdFakeQuantGrad,
  simdFakeQuantPerChannel,
  simdRelu6Grad,
  simdRequantize,
} from './simd.js';

export const BN_STATS = 'QatBnStats';
export const BN_ACT = 'QatBnAct';
export const BN_ACT_GRAD = 'QatBnActGrad';
export const FAKE_QUANT = 'QatFakeQuant';
export const FAKE_QUANT_GRAD = 'QatFakeQuantGrad';
export const FAKE_QUANT_PER_CHANNEL = 'QatFakeQuantPerChannel';
export const RELU6_GRAD = 'QatRelu6Grad';
/** Inference only (the int8 graph's evaluation): no gradient. */
export const REQUANTIZE = 'QatRequantize';
/** Inference only (the int8 graph's residual adds): no gradient. */
export const QLINEAR_ADD = 'QatQLinearAdd';

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

/** The activation attributes a BN_ACT or BN_ACT_GRAD kernel was called with, typed (qat-math BnActAttrs). */
function readBnActAttrs(a: Record<string, number>): BnActAttrs {
  return { clampLo: a.clampLo, clampHi: a.clampHi, scale: a.scale, qmin: a.qmin, qmax: a.qmax };
}

function channelsOf(x: TensorInfo): number {
  return x.shape[x.shape.length - 1];
}

const kernels: Record<string, (run: Runner) => (a: Args) => TensorInfo | TensorInfo[]> = {
  [BN_STATS]:
    (run) =>
    ({ inputs: { x, gamma, beta }, backend, attrs }) => {
      const c = channelsOf(x);
      if (gamma.shape.length !== 1 || gamma.shape[0] !== c || beta.shape[0] !== c) {
        throw new WasmTrainingError('WASM_TRAINING_BAD_INPUT', `${BN_STATS}: gamma/beta must be [${c}] for input ${x.shape}.`);
      }
      return run(
        BN_STATS,
        backend,
        [x, gamma, beta],
        [[c], [c], [c], [c], [2]],
        ([xv, g, b], [mean, variance, k, bo, range]) => bnStats(xv, g, b, attrs.epsilon, { mean, variance, k, b: bo, range }, activeCollective()),
        (be, [mean, variance, k, bo, range]) => simdBnStats(be, x, gamma, beta, attrs.epsilon, { mean, variance, k, b: bo, range }),
      );
    },
  [BN_ACT]:
    (run) =>
    ({ inputs: { x, k, b }, backend, attrs }) =>
      run(
        BN_ACT,
        backend,
        [x, k, b],
        [x.shape],
        ([xv, kv, bv], [y]) => bnActApply(xv, kv, bv, readBnActAttrs(attrs), y),
        (be, [y]) => simdBnActApply(be, x, k, b, readBnActAttrs(attrs), y),
      )[0],
  [BN_ACT_GRAD]:
    (run) =>
    ({ inputs: { dy, x, gamma, mean, variance, k, b }, backend, attrs }) => {
      const [lo, hi] = bnActGradBounds(readBnActAttrs(attrs));
      const c = channelsOf(x);
      return run(
        BN_ACT_GRAD,
        backend,
        [dy, x, gamma, mean, variance, k, b],
        [x.shape, [c], [c]],
        ([g, xv, ga, m, v, kv, bv], [dx, dg, db]) =>
          bnActBackward(g, xv, ga, { mean: m, variance: v, k: kv, b: bv }, attrs.epsilon, lo, hi, dx, dg, db, activeCollective()),
        (be, [dx, dGamma, dBeta]) => simdBnActBackward(be, dy, x, gamma, { mean, variance, k, b }, attrs.epsilon, lo, hi, { dx, dGamma, dBeta }),
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
  [REQUANTIZE]:
    (run) =>
    ({ inputs: { x, bias, multiplier }, backend, attrs }) => {
      const c = channelsOf(x);
      if (bias.shape.length !== 1 || bias.shape[0] !== c || multiplier.shape[0] !== c) {
        throw new WasmTrainingError('WASM_TRAINING_BAD_INPUT', `${REQUANTIZE}: bias/multiplier must be [${c}] for input ${x.shape}.`);
      }
      return run(
        REQUANTIZE,
        backend,
        [x, bias, multiplier],
        [x.shape],
        ([xv, bv, mv], [y]) => requantizeChannels(xv, bv, mv, attrs.lo, attrs.hi, y),
        (be, [y]) => simdRequantize(be, x, bias, multiplier, y, attrs.lo, attrs.hi),
      )[0];
    },
  [QLINEAR_ADD]:
    (run) =>
    ({ inputs: { a, b }, backend, attrs }) => {
      if (a.shape.join() !== b.shape.join()) {
        throw new WasmTrainingError('WASM_TRAINING_BAD_INPUT', `${QLINEAR_ADD}: inputs must have one shape, got ${a.shape} and ${b.shape}.`);
      }
      const quant = (p: 'a' | 'b' | 'out') => ({ scale: attrs[`${p}Scale`], zeroPoint: attrs[`${p}ZeroPoint`] });
      return run(
        QLINEAR_ADD,
        backend,
        [a, b],
        [a.shape],
        ([av, bv], [y]) => {
          qlinearAddCentered(av, quant('a'), bv, quant('b'), quant('out'), y);
        },
        (be, [y]) => simdQlinearAdd(be, a, b, y, quant('a'), quant('b'), quant('out')),
      )[0];
    },
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
