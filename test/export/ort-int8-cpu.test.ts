// Which weight storage the int8 scorer (and so a job's reported int8 top-1) uses on a CPU: 8-bit
// weights stored as int8 saturate in ONNX Runtime's x86 kernels without VNNI, so there the scorer
// runs the uint8-stored file the export falls back to.
import { describe, expect, it } from 'vitest';
import { exactWeightEncoding, u8s8Saturates } from '../../src/export/ort-int8-cpu.js';

const cpuinfo = (flags: string) => `processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: ${flags}\nbugs\t\t: sysret_ss_attrs\n`;

describe('ONNX Runtime int8 weights on this CPU', () => {
  it('x64 without VNNI saturates; AVX-512 VNNI, AVX-VNNI and AMX do not; ARM does not', () => {
    expect(u8s8Saturates('x64', cpuinfo('fpu sse4_2 fma avx avx2 bmi2'))).toBe(true);
    expect(u8s8Saturates('x64', cpuinfo('fma avx avx2 avx512f avx512bw avx512_vnni'))).toBe(false);
    expect(u8s8Saturates('x64', cpuinfo('fma avx avx2 avx_vnni'))).toBe(false);
    expect(u8s8Saturates('x64', cpuinfo('avx2 amx_bf16 amx_int8 amx_tile'))).toBe(false);
    // A flag's name inside another's is not that flag.
    expect(u8s8Saturates('x64', cpuinfo('avx2 avx512_vnni_like'))).toBe(true);
    expect(u8s8Saturates('arm64', 'Features\t: fp asimd asimddp')).toBe(false);
  });

  it('assumes saturation on x64 when the flags cannot be read', () => {
    expect(u8s8Saturates('x64', null)).toBe(true);
    expect(u8s8Saturates('x64', 'processor\t: 0\n')).toBe(true);
  });

  it('stores 8-bit weights as uint8 only where int8 ones saturate; 7-bit weights always as int8', () => {
    expect(exactWeightEncoding(8, true)).toBe('uint8');
    expect(exactWeightEncoding(8, false)).toBe('int8');
    expect(exactWeightEncoding(7, true)).toBe('int8');
    expect(exactWeightEncoding(7, false)).toBe('int8');
  });
});
