// The SIMD module (simd-kernels.wat) instantiated on the wasm backend's own memory, and the kernel
// bodies that use it. Each returns false when it cannot run (no SIMD support, channels not a
// multiple of 4) and the caller takes its plain-JS path.
import v8 from 'node:v8';
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { ConvGeometry } from './conv-geometry.js';
import type { WasmBackendLike } from './heap.js';
import { SIMD_MODULE_BASE64, SIMD_MODULE_PLAIN_BASE64 } from './simd-module.generated.js';
import { activeCollective } from '../../data-parallel/step-collective.js';
import { bnBackwardCoefficients, finishBnStats, type BnActAttrs } from './qat-math.js';
import type { sgdUpdate } from '../../optimizer.js';
import { addConstants } from '../../qlinear-add.js';
import type { ActQuant } from '../../quant-graph.js';

interface SimdExports {
  fq_fwd(x: number, y: number, n: number, s: number, lo: number, hi: number): void;
  fq_bwd(dy: number, x: number, dx: number, n: number, lo: number, hi: number): void;
  relu6_bwd(dy: number, x: number, dx: number, n: number): void;
  requant(x: number, y: number, rows: number, c: number, bias: number, mult: number, lo: number, hi: number): void;
  qadd(a: number, b: number, y: number, n: number, za: number, zb: number, zo: number, ra: number, rb: number, fixed: number): void;
  chan_moments(x: number, rows: number, c: number, shift: number, sum: number, sumSq: number, rowBlock: number, min: number, max: number): void;
  bn_bwd_sums(
    x: number,
    dy: number,
    rows: number,
    c: number,
    mean: number,
    sdy: number,
    sdyxc: number,
    rowBlock: number,
    k: number,
    b: number,
    lo: number,
    hi: number,
  ): void;
  bn_act_apply(
    x: number,
    y: number,
    rows: number,
    c: number,
    k: number,
    b: number,
    clampLo: number,
    clampHi: number,
    s: number,
    qmin: number,
    qmax: number,
  ): void;
  bn_bwd_apply(
    dy: number,
    x: number,
    dx: number,
    rows: number,
    c: number,
    a: number,
    bc: number,
    m: number,
    d: number,
    k: number,
    b: number,
    lo: number,
    hi: number,
  ): void;
  dw_filter_grad(x: number, dy: number, acc32: number, acc64: number, ...geom: number[]): void;
  dw_input_grad(dy: number, f: number, dx: number, ...geom: number[]): void;
  im2col(x: number, out: number, ...geomAndRowLength: number[]): void;
  gram_xty(x: number, y: number, acc: number, rows: number, m: number, n: number, rowBlock: number, packed: number, direct: number): void;
  gemm_pack(b: number, out: number, k: number, n: number, rowStride: number, colStride: number): void;
  gemm(a: number, packedB: number, c: number, m: number, k: number, n: number, rowBlock: number): void;
  vec_max(x: number, n: number): number;
  vec_min(x: number, n: number): number;
  chan_absmax(x: number, rows: number, c: number, out: number): void;
  fq_chan(x: number, y: number, rows: number, c: number, s: number, q: number): void;
  sgd_update(w: number, g: number, v: number, out: number, n: number, wd: number, m: number, lr: number, first: number): void;
}

// The WebAssembly global, typed locally (the project's lib settings do not declare it).
interface WebAssemblyApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: object };
  Memory: abstract new (...args: never[]) => object;
}
const WebAssembly = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

let compiled: { module: object; relaxed: boolean } | null | undefined;
const instances = new WeakMap<object, SimdExports>();

/**
 * The SIMD module with relaxed SIMD (fused multiply-adds) where this runtime runs it: Node 22 and
 * later do; Node 20 has it behind V8's --experimental-wasm-relaxed-simd, which is turned on here
 * (a wasm feature flag, read when a module is validated) before trying again. Else the module
 * without relaxed SIMD; null without SIMD at all.
 */
function compile(): { module: object; relaxed: boolean } | null {
  if (compiled === undefined) {
    const relaxed = Buffer.from(SIMD_MODULE_BASE64, 'base64');
    if (!WebAssembly.validate(relaxed)) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    const plain = Buffer.from(SIMD_MODULE_PLAIN_BASE64, 'base64');
    if (WebAssembly.validate(relaxed)) compiled = { module: new WebAssembly.Module(relaxed), relaxed: true };
    else compiled = WebAssembly.validate(plain) ? { module: new WebAssembly.Module(plain), relaxed: false } : null;
  }
  return compiled;
}

/** Which SIMD module the kernels run: with relaxed SIMD, without, or none (no WebAssembly SIMD). */
export function simdModuleKind(): 'relaxed' | 'plain' | null {
  const c = compile();
  return c ? (c.relaxed ? 'relaxed' : 'plain') : null;
}

// On unless a caller says otherwise: registerWasmTrainingKernels({ simd }) (QATSERVE_WASM_SIMD,
// passed in from the service's settings or a bench), or a test comparing both paths.
let disabled = false;

/** Turns the SIMD paths off or on again. */
export function setSimdEnabled(on: boolean): void {
  disabled = !on;
}

/** Whether the kernels take their SIMD paths (switched on, and this WebAssembly runs SIMD). */
export function simdEnabled(): boolean {
  return !disabled && compile() !== null;
}

function simdFor(be: WasmBackendLike): SimdExports | null {
  if (disabled) return null;
  const memory = (be.wasm as unknown as { asm?: { memory?: unknown } }).asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) return null;
  let inst = instances.get(memory);
  if (!inst) {
    const mod = compile();
    if (!mod) return null;
    inst = new WebAssembly.Instance(mod.module, { env: { memory } }).exports as unknown as SimdExports;
    instances.set(memory, inst);
  }
  return inst;
}

const ptr = (be: WasmBackendLike, t: TensorInfo): number => be.dataIdMap.get(t.dataId).memoryOffset;

/** The next 16-byte boundary at or after a heap address (which may be above 2^31). */
export function alignUp16(address: number): number {
  // Arithmetic, not `& ~15`: bitwise ops are signed 32-bit, and above 2 GB of heap that made the
  // address negative.
  return Math.ceil(address / 16) * 16;
}

/** Scratch on the wasm heap, 16-byte aligned blocks of the given byte sizes, zeroed unless asked not to. */
class Scratch {
  private readonly base: number;
  readonly at: number[] = [];
  constructor(
    private readonly be: WasmBackendLike,
    sizes: number[],
    zeroed = true,
  ) {
    const total = sizes.reduce((a, s) => a + ((s + 15) & ~15), 16);
    this.base = be.wasm._malloc(total) >>> 0;
    let p = alignUp16(this.base);
    for (const s of sizes) {
      this.at.push(p);
      p += (s + 15) & ~15;
    }
    if (zeroed) be.wasm.HEAPU8.fill(0, this.base, this.base + total);
  }
  f64(i: number, n: number): Float64Array {
    return new Float64Array(this.be.wasm.HEAPU8.buffer, this.at[i], n);
  }
  f32(i: number, n: number): Float32Array {
    return new Float32Array(this.be.wasm.HEAPU8.buffer, this.at[i], n);
  }
  free(): void {
    this.be.wasm._free(this.base);
  }
}

const f = Math.fround;

export function simdFakeQuant(be: WasmBackendLike, x: TensorInfo, y: TensorInfo, scale: number, qmin: number, qmax: number): boolean {
  const s = simdFor(be);
  if (!s) return false;
  s.fq_fwd(ptr(be, x), ptr(be, y), size(x), f(scale), qmin, qmax);
  return true;
}

export function simdFakeQuantGrad(be: WasmBackendLike, dy: TensorInfo, x: TensorInfo, dx: TensorInfo, lo: number, hi: number): boolean {
  const s = simdFor(be);
  if (!s) return false;
  s.fq_bwd(ptr(be, dy), ptr(be, x), ptr(be, dx), size(x), lo, hi);
  return true;
}

export function simdRelu6Grad(be: WasmBackendLike, dy: TensorInfo, x: TensorInfo, dx: TensorInfo): boolean {
  const s = simdFor(be);
  if (!s) return false;
  s.relu6_bwd(ptr(be, dy), ptr(be, x), ptr(be, dx), size(x));
  return true;
}

/** Same contract as qat-math requantizeChannels, on heap tensors (bias and multiplier [C], C % 4 == 0). */
export function simdRequantize(be: WasmBackendLike, x: TensorInfo, bias: TensorInfo, mult: TensorInfo, y: TensorInfo, lo: number, hi: number): boolean {
  const c = bias.shape[0];
  const s = simdFor(be);
  if (!s || c % 4 !== 0) return false;
  s.requant(ptr(be, x), ptr(be, y), size(x) / c, c, ptr(be, bias), ptr(be, mult), lo, hi);
  return true;
}

/** Same contract as qlinear-add.ts qlinearAddCentered, on heap tensors of one shape. */
export function simdQlinearAdd(
  be: WasmBackendLike,
  a: TensorInfo,
  b: TensorInfo,
  y: TensorInfo,
  aQuant: ActQuant,
  bQuant: ActQuant,
  outQuant: ActQuant,
): boolean {
  const s = simdFor(be);
  if (!s) return false;
  const k = addConstants(aQuant, bQuant, outQuant);
  s.qadd(ptr(be, a), ptr(be, b), ptr(be, y), size(a), aQuant.zeroPoint, bQuant.zeroPoint, outQuant.zeroPoint, k.rA, k.rB, k.fixed);
  return true;
}

function size(t: TensorInfo): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

/** Heap views of the QatBnStats kernel's outputs (qat-math BnStatsOut). */
export interface BnStatsTensors {
  mean: TensorInfo;
  variance: TensorInfo;
  k: TensorInfo;
  b: TensorInfo;
  range: TensorInfo;
}

/** Same contract as qat-math bnStats, on heap tensors. */
export function simdBnStats(be: WasmBackendLike, x: TensorInfo, gamma: TensorInfo, beta: TensorInfo, eps: number, out: BnStatsTensors): boolean {
  const c = gamma.shape[0];
  const s = simdFor(be);
  if (!s || c % 4 !== 0) return false;
  const rows = size(x) / c;
  const sc = new Scratch(be, [8 * c, 8 * c, 4 * c, 4 * c, 4 * c]); // sum, sq, shift, min, max
  try {
    // Shifted by the first row: the sums of (x - shift) stay small, so sum-of-squares minus the
    // squared mean does not cancel catastrophically even when |mean| >> std.
    const xp = ptr(be, x);
    be.wasm.HEAPU8.copyWithin(sc.at[2], xp, xp + 4 * c);
    sc.f32(3, c).fill(Infinity);
    sc.f32(4, c).fill(-Infinity);
    s.chan_moments(xp, rows, c, sc.at[2], sc.at[0], sc.at[1], channelRowBlock(c), sc.at[3], sc.at[4]);
    const sum = sc.f64(0, c);
    const sq = sc.f64(1, c);
    const shift = sc.f32(2, c);
    const mean = new Float64Array(c);
    const m2 = new Float64Array(c);
    for (let j = 0; j < c; j++) {
      const d = sum[j] / rows;
      mean[j] = shift[j] + d;
      m2[j] = Math.max(0, sq[j] - sum[j] * d);
    }
    const local = { rows, mean, m2, min: sc.f32(3, c).slice(), max: sc.f32(4, c).slice() };
    const heap = be.wasm.HEAPU8.buffer;
    const view = (t: TensorInfo) => new Float32Array(heap, ptr(be, t), size(t));
    const o = { mean: view(out.mean), variance: view(out.variance), k: view(out.k), b: view(out.b), range: view(out.range) };
    finishBnStats(local, view(gamma), view(beta), eps, o, activeCollective());
  } finally {
    sc.free();
  }
  return true;
}

/** Same contract as qat-math bnActApply, on heap tensors. */
export function simdBnActApply(be: WasmBackendLike, x: TensorInfo, k: TensorInfo, b: TensorInfo, a: BnActAttrs, y: TensorInfo): boolean {
  const c = k.shape[0];
  const s = simdFor(be);
  if (!s || c % 4 !== 0) return false;
  s.bn_act_apply(ptr(be, x), ptr(be, y), size(x) / c, c, ptr(be, k), ptr(be, b), a.clampLo, a.clampHi, f(a.scale), a.qmin, a.qmax);
  return true;
}

/** Same contract as qat-math bnActBackward, on heap tensors. */
export function simdBnActBackward(
  be: WasmBackendLike,
  dy: TensorInfo,
  x: TensorInfo,
  gamma: TensorInfo,
  stats: Omit<BnStatsTensors, 'range'>,
  eps: number,
  lo: number,
  hi: number,
  out: { dx: TensorInfo; dGamma: TensorInfo; dBeta: TensorInfo },
): boolean {
  const c = gamma.shape[0];
  const s = simdFor(be);
  if (!s || c % 4 !== 0) return false;
  const localRows = size(x) / c;
  // sdy, sdyxc, a, bc, d
  const sc = new Scratch(be, [8 * c, 8 * c, 4 * c, 4 * c, 4 * c]);
  try {
    const [kp, bp, mp] = [ptr(be, stats.k), ptr(be, stats.b), ptr(be, stats.mean)];
    s.bn_bwd_sums(ptr(be, x), ptr(be, dy), localRows, c, mp, sc.at[0], sc.at[1], channelRowBlock(c), kp, bp, lo, hi);
    const own = { sDy: sc.f64(0, c), sDyXc: sc.f64(1, c) };
    // Split over threads, dx needs the whole batch's sums; dGamma and dBeta stay this rank's share.
    const coll = activeCollective();
    const whole = coll ? coll.bnGradSums(localRows, own.sDy, own.sDyXc) : { rows: localRows, ...own };
    const heap = be.wasm.HEAPU8.buffer;
    const view = (t: TensorInfo) => new Float32Array(heap, ptr(be, t), c);
    const co = { a: sc.f32(2, c), bc: sc.f32(3, c), d: sc.f32(4, c), dGamma: view(out.dGamma), dBeta: view(out.dBeta) };
    bnBackwardCoefficients(own, whole, view(gamma), view(stats.variance), eps, co);
    s.bn_bwd_apply(ptr(be, dy), ptr(be, x), ptr(be, out.dx), localRows, c, sc.at[2], sc.at[3], mp, sc.at[4], kp, bp, lo, hi);
  } finally {
    sc.free();
  }
  return true;
}

/**
 * Rows per block of chan_moments / bn_bwd_sums: about 64 KB of rows, so a block read for the first
 * channel group is still in cache for the others; at least 64 rows so the per-block flush of the
 * register sums stays small next to the work.
 */
function channelRowBlock(c: number): number {
  return Math.max(64, Math.floor(16384 / c));
}

function geom(g: ConvGeometry): number[] {
  return [g.batch, g.inH, g.inW, g.inC, g.outH, g.outW, g.kH, g.kW, g.strideH, g.strideW, g.padTop, g.padLeft];
}

/**
 * [oy0, oy1, ox0, ox1]: the output pixels whose whole 3x3 window lies inside the input (the
 * register-blocked path of dw_filter_grad); an empty box for other filter sizes.
 */
function interior3x3(g: ConvGeometry): number[] {
  if (g.kH !== 3 || g.kW !== 3) return [0, 0, 0, 0];
  const range = (pad: number, stride: number, inSize: number, outSize: number) => {
    const lo = Math.ceil(pad / stride);
    const hi = Math.min(outSize, Math.floor((inSize - 3 + pad) / stride) + 1);
    return hi > lo ? [lo, hi] : [0, 0];
  };
  const [oy0, oy1] = range(g.padTop, g.strideH, g.inH, g.outH);
  const [ox0, ox1] = range(g.padLeft, g.strideW, g.inW, g.outW);
  return oy1 > oy0 && ox1 > ox0 ? [oy0, oy1, ox0, ox1] : [0, 0, 0, 0];
}

/**
 * [iy0, iy1, ix0, ix1]: the input pixels all nine taps of a 3x3 stride-1 filter read from inside
 * dy (the gathering path of dw_input_grad); an empty box otherwise.
 */
function inputInterior3x3(g: ConvGeometry): number[] {
  if (g.kH !== 3 || g.kW !== 3 || g.strideH !== 1 || g.strideW !== 1) return [0, 0, 0, 0];
  const iy0 = Math.max(0, 2 - g.padTop);
  const iy1 = Math.min(g.inH, g.outH - g.padTop);
  const ix0 = Math.max(0, 2 - g.padLeft);
  const ix1 = Math.min(g.inW, g.outW - g.padLeft);
  return iy1 > iy0 && ix1 > ix0 ? [iy0, iy1, ix0, ix1] : [0, 0, 0, 0];
}

/** Depthwise filter gradient (multiplier 1) into `out` [kh, kw, C, 1]. */
export function simdDepthwiseFilterGrad(be: WasmBackendLike, x: TensorInfo, dy: TensorInfo, g: ConvGeometry, out: TensorInfo): boolean {
  const s = simdFor(be);
  if (!s || g.mult !== 1 || g.inC % 4 !== 0) return false;
  const n = g.kH * g.kW * g.inC;
  const sc = new Scratch(be, [4 * n, 8 * n]);
  try {
    s.dw_filter_grad(ptr(be, x), ptr(be, dy), sc.at[0], sc.at[1], ...geom(g), ...interior3x3(g));
    const acc = sc.f64(1, n);
    const o = new Float32Array(be.wasm.HEAPU8.buffer, ptr(be, out), n);
    for (let i = 0; i < n; i++) o[i] = acc[i];
  } finally {
    sc.free();
  }
  return true;
}

/** Depthwise input gradient (multiplier 1) into `dx` [N, H, W, C]. */
export function simdDepthwiseInputGrad(be: WasmBackendLike, dy: TensorInfo, filter: TensorInfo, g: ConvGeometry, dx: TensorInfo): boolean {
  const s = simdFor(be);
  if (!s || g.mult !== 1 || g.inC % 4 !== 0) return false;
  s.dw_input_grad(ptr(be, dy), ptr(be, filter), ptr(be, dx), ...geom(g), ...inputInterior3x3(g));
  return true;
}

/**
 * conv-grad-kernels.ts im2col (same contract, same bytes) on heap tensors: `patches` [rows, k],
 * zeroed by the caller.
 */
export function simdIm2col(be: WasmBackendLike, x: TensorInfo, g: ConvGeometry, k: number, patches: TensorInfo): boolean {
  const s = simdFor(be);
  if (!s) return false;
  s.im2col(ptr(be, x), ptr(be, patches), ...geom(g), k);
  return true;
}

/** Same contract as qat-math fakeQuantPerChannelForward, on heap tensors (scales is an output). */
export function simdFakeQuantPerChannel(be: WasmBackendLike, x: TensorInfo, channels: number, qmax: number, y: TensorInfo, scales: TensorInfo): boolean {
  const s = simdFor(be);
  if (!s || channels % 4 !== 0) return false;
  const rows = size(x) / channels;
  const sp = ptr(be, scales);
  be.wasm.HEAPU8.fill(0, sp, sp + 4 * channels);
  s.chan_absmax(ptr(be, x), rows, channels, sp);
  const sc = new Float32Array(be.wasm.HEAPU8.buffer, sp, channels);
  const floor = f(1e-8 * 127);
  for (let j = 0; j < channels; j++) sc[j] = f(Math.max(sc[j], floor) / qmax);
  s.fq_chan(ptr(be, x), ptr(be, y), rows, channels, sp, qmax);
  return true;
}

/**
 * out[outRows, n] = (X^T Y)[:outRows] for X [rows, m] and Y [rows, n], heap pointers given as
 * tensors (their shapes are not read; only the first rows*m / rows*n elements are). m and n must
 * be multiples of 4; outRows <= m lets a caller pad X's columns to 4 and drop the padding rows.
 */
export function simdGramXtY(be: WasmBackendLike, x: TensorInfo, y: TensorInfo, rows: number, m: number, n: number, out: TensorInfo, outRows = m): boolean {
  const s = simdFor(be);
  if (!s || m % 4 !== 0 || n % 4 !== 0) return false;
  const rb = gramRowBlock(rows);
  // One block: its f32 sums are the result (exactly what the f64 totals would round back to), so
  // the tiles store straight into out, with no totals to zero and convert.
  const direct = rows <= rb && outRows === m;
  const packed = new Scratch(be, [4 * rb * (m + n)], false);
  const totals = direct ? null : new Scratch(be, [8 * m * n]);
  try {
    s.gram_xty(ptr(be, x), ptr(be, y), totals ? totals.at[0] : ptr(be, out), rows, m, n, rb, packed.at[0], direct ? 1 : 0);
    if (totals) {
      const acc = totals.f64(0, outRows * n);
      const o = new Float32Array(be.wasm.HEAPU8.buffer, ptr(be, out), outRows * n);
      for (let i = 0; i < o.length; i++) o[i] = acc[i];
    }
  } finally {
    packed.free();
    totals?.free();
  }
  return true;
}

/**
 * Rows per block of gram_xty. Each block is packed into panels (sequential reads whatever the
 * channel counts) and every register tile runs over the whole block before its f32 sums go to the
 * f64 totals, so longer blocks mean fewer flushes; 1024 rows keep the f32 sums short and the packed
 * block within a few MB. Every 1x1 filter gradient of a 1.0@224 bs8 step, as a multiple of the same
 * layers' forward products (gemm) in the same run, on an AVX-512 EPYC (family 25 model 17):
 * unpacked with the earlier rule (64K floats per block, at most 256 rows) 1.59, packed with that
 * rule 1.48, packed 512 rows 1.39, 1024 rows 1.35-1.36, 2048 rows 1.42.
 */
function gramRowBlock(rows: number): number {
  // Up to 2048 rows (a 14x14 layer at batch 8) in one block, whose tiles store f32 directly.
  return rows <= 2048 ? rows : 1024;
}

/**
 * out[m, n] = a[m, k] b[k, n], or a b^T when `bTransposed` (b then [n, k]): a 1x1 convolution's
 * output (b = the filter) or input gradient (b^T = the filter transposed), n % 4 == 0.
 */
export function simdGemm(be: WasmBackendLike, a: TensorInfo, b: TensorInfo, m: number, k: number, n: number, out: TensorInfo, bTransposed: boolean): boolean {
  const s = simdFor(be);
  if (!s || n % 4 !== 0) return false;
  const sc = new Scratch(be, [4 * k * n], false);
  try {
    s.gemm_pack(ptr(be, b), sc.at[0], k, n, bTransposed ? 4 : 4 * n, bTransposed ? 4 * k : 4);
    s.gemm(ptr(be, a), sc.at[0], ptr(be, out), m, k, n, gemmRowBlock(k));
  } finally {
    sc.free();
  }
  return true;
}

/** Rows of A per block of gemm: 32K floats (128 KB), re-read once per panel of B from L2. */
function gemmRowBlock(k: number): number {
  return Math.max(4, Math.floor(32768 / k / 4) * 4);
}

/** Max (or min) of all n >= 1 elements of x into the one-element `out`; NaN if any is NaN. */
/** Min and max of a float32 heap tensor as numbers (no output tensors), or null without the SIMD module. */
export function simdRange(be: WasmBackendLike, x: TensorInfo, n: number): { min: number; max: number } | null {
  const s = simdFor(be);
  if (!s || n < 1) return null;
  return { min: s.vec_min(ptr(be, x), n), max: s.vec_max(ptr(be, x), n) };
}

export function simdReduceAll(be: WasmBackendLike, x: TensorInfo, n: number, max: boolean, out: TensorInfo): boolean {
  const s = simdFor(be);
  if (!s || n < 1) return false;
  const v = max ? s.vec_max(ptr(be, x), n) : s.vec_min(ptr(be, x), n);
  new Float32Array(be.wasm.HEAPU8.buffer, ptr(be, out), 1)[0] = v;
  return true;
}

/**
 * optimizer.ts sgdUpdate (same contract, bit-identical results) when the weights, momentum and
 * output live in this backend's heap; false otherwise (the caller's JS loop runs). A gradient
 * elsewhere (a split step's sum, in shared memory) is copied into scratch first: at 1.0@224 with
 * two threads the JS loop over it took 25-35 ms of a 540 ms step on every rank.
 */
export function simdSgdUpdate(be: WasmBackendLike, ...[w, g, v, wOut, o]: Parameters<typeof sgdUpdate>): boolean {
  const s = simdFor(be);
  const heap = be.wasm.HEAPU8.buffer;
  if (!s || !(g instanceof Float32Array) || g.length !== w.length || ![w, v, wOut].every((a) => a.buffer === heap && a.length === w.length)) return false;
  // Addresses, not views: allocating the scratch may grow the heap, which detaches every view of it.
  const [wAt, vAt, outAt, n] = [w.byteOffset, v.byteOffset, wOut.byteOffset, w.length];
  const run = (gAt: number) => s.sgd_update(wAt, gAt, vAt, outAt, n, f(o.decay), f(o.momentum), f(o.lr), o.firstStep ? 1 : 0);
  if (g.buffer === heap) {
    run(g.byteOffset);
    return true;
  }
  const sc = new Scratch(be, [4 * n], false);
  try {
    new Float32Array(be.wasm.HEAPU8.buffer, sc.at[0], n).set(g);
    run(sc.at[0]);
  } finally {
    sc.free();
  }
  return true;
}
