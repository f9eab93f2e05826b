// One exact implementation of ONNX Runtime's QLinearAdd, shared by the export's integer reference
// and the tfjs int8 runner (which the exporter checks the ONNX file against).
import { roundHalfEven, type ActQuant } from './quant-graph.js';

/**
 * QLinearAdd on uint8 values, as ONNX Runtime's MLAS kernel computes it on x86: two fused
 * multiply-adds, fma(a, rA, fma(b, rB, fixed)), each rounded once to float32, then round half to
 * even and clamp. Float32 tensor ops round after the multiply and again after the add, which
 * lands on the other side of a .5 boundary now and then; a deep net turns such flips into logit
 * steps, so both the export's reference and the tfjs int8 runner use this one function.
 * In JS, `fixed + b * rB` is exact in float64 (8-bit times 24-bit), so f32() of it is the FMA.
 */
export function qlinearAdd(a: ArrayLike<number>, aQuant: ActQuant, b: ArrayLike<number>, bQuant: ActQuant, outQuant: ActQuant, out: Uint8Array): Uint8Array {
  const f32 = Math.fround;
  const sC = f32(outQuant.scale);
  const rA = f32(f32(aQuant.scale) / sC);
  const rB = f32(f32(bQuant.scale) / sC);
  const fixed = f32(outQuant.zeroPoint - f32(rA * aQuant.zeroPoint + f32(rB * bQuant.zeroPoint)));
  for (let i = 0; i < out.length; i++) {
    const v = roundHalfEven(f32(f32(fixed + b[i] * rB) + a[i] * rA));
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}
