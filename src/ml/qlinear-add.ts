// One exact implementation of ONNX Runtime's QLinearAdd, shared by the export's integer reference
// (uint8 activations) and the tfjs int8 runner (activations minus their zero points, on the host
// or in the QatQLinearAdd kernel), which the exporter checks the ONNX file against.
import { roundClamp, type ActQuant } from './quant-graph.js';

/** The float32 constants QLinearAdd derives from the three quantizations. */
export interface AddConstants {
  rA: number;
  rB: number;
  fixed: number;
}

export function addConstants(aQuant: ActQuant, bQuant: ActQuant, outQuant: ActQuant): AddConstants {
  const f32 = Math.fround;
  const sC = f32(outQuant.scale);
  const rA = f32(f32(aQuant.scale) / sC);
  const rB = f32(f32(bQuant.scale) / sC);
  return { rA, rB, fixed: f32(outQuant.zeroPoint - f32(rA * aQuant.zeroPoint + f32(rB * bQuant.zeroPoint))) };
}

/**
 * One output of QLinearAdd on uint8 values qa and qb, as ONNX Runtime's MLAS kernel computes it on
 * x86: two fused multiply-adds, fma(a, rA, fma(b, rB, fixed)), each rounded once to float32, then
 * round half to even and clamp. Float32 tensor ops round after the multiply and again after the
 * add, which lands on the other side of a .5 boundary now and then; a deep net turns such flips
 * into logit steps. In JS, `fixed + qb * rB` is exact in float64 (8-bit times 24-bit), so f32()
 * of it is the FMA.
 */
function addOne(qa: number, qb: number, k: AddConstants): number {
  const f32 = Math.fround;
  return roundClamp(f32(f32(k.fixed + qb * k.rB) + qa * k.rA), 0, 255);
}

/** QLinearAdd on uint8 values. */
export function qlinearAdd(a: ArrayLike<number>, aQuant: ActQuant, b: ArrayLike<number>, bQuant: ActQuant, outQuant: ActQuant, out: Uint8Array): Uint8Array {
  const k = addConstants(aQuant, bQuant, outQuant);
  for (let i = 0; i < out.length; i++) out[i] = addOne(a[i], b[i], k);
  return out;
}

/** QLinearAdd on activations stored minus their zero points (the int8 runner's): out likewise. */
export function qlinearAddCentered(a: Float32Array, aQuant: ActQuant, b: Float32Array, bQuant: ActQuant, outQuant: ActQuant, out: Float32Array): Float32Array {
  const k = addConstants(aQuant, bQuant, outQuant);
  const za = aQuant.zeroPoint;
  const zb = bQuant.zeroPoint;
  const zo = outQuant.zeroPoint;
  for (let i = 0; i < out.length; i++) out[i] = addOne(a[i] + za, b[i] + zb, k) - zo;
  return out;
}
