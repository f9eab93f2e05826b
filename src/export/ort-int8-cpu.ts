// Whether ONNX Runtime's int8 kernels compute 8-bit weights exactly on this CPU. Its x86 u8s8
// kernels without VNNI multiply uint8 activations by int8 weights with vpmaddubsw, which adds each
// pair of products in saturating int16: with weights up to 127 a pair can reach 64,770 and clip
// (measured on an AMD EPYC family 23 model 49, AVX2 only: a 1.0@224 model's int8-stored file agreed
// with the model on 85.9% of 64 images, 73 logit steps off; the uint8-stored one on 100%, 0 steps).
// VNNI (vpdpbusd) adds into int32, and ARM's kernels widen first: no saturation there.
import fs from 'node:fs';
import type { WeightEncoding } from './manifest.js';

/** The x86 CPU flags (/proc/cpuinfo) under which ORT's u8s8 kernels accumulate in int32. */
const VNNI_FLAGS = ['avx512_vnni', 'avx_vnni', 'amx_int8'];

/**
 * True when int8-stored 8-bit weights may saturate here: an x64 CPU whose flags show no VNNI, or
 * whose flags cannot be read (uint8 storage is exact on every CPU, so doubt costs speed only).
 */
export function u8s8Saturates(arch: string = process.arch, cpuinfo: string | null = readCpuinfo()): boolean {
  if (arch !== 'x64') return false;
  const flags = cpuinfo && /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1].trim().split(/\s+/);
  return !flags || !VNNI_FLAGS.some((f) => flags.includes(f));
}

function readCpuinfo(): string | null {
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
}

let saturates: boolean | undefined;

/**
 * How a file whose figures a user reads stores its weights on this CPU: int8 (ORT's fast kernels),
 * but uint8 for 8-bit weights where int8 ones may saturate; 7-bit weights cannot (ORT's
 * "reduce_range"). The export tries int8 first and keeps uint8 when int8 does not verify.
 */
export function exactWeightEncoding(weightBits: 7 | 8, saturating: boolean = (saturates ??= u8s8Saturates())): WeightEncoding {
  return weightBits === 8 && saturating ? 'uint8' : 'int8';
}
