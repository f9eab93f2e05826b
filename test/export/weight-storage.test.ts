// A model exported with int8-stored 8-bit weights (on a VNNI or ARM machine) served or evaluated on
// an x86 CPU without VNNI, where ORT's u8s8 kernels would saturate: the file is rewritten to uint8
// storage, which must compute exactly what the export's own uint8 file computes.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { quantGraphToQdqOnnx } from '../../src/export/onnx-qdq.js';
import { DataType, decodeModel } from '../../src/export/onnx-proto.js';
import { expectedKernels, fusionReport, optimizedOpCounts } from '../../src/export/fusion-check.js';
import { needsUint8Storage, toUint8WeightStorage } from '../../src/export/weight-storage.js';
import { buildSyntheticMobileNetV2, syntheticImages } from '../../testkit/synthetic-graph.js';

async function logits(model: Uint8Array, x: Float32Array, n: number, size: number): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [n, 3, size, size]) });
  await session.release();
  return out[session.outputNames[0]].data as Float32Array;
}

describe('weight storage for this CPU', () => {
  const size = 48;
  const g = buildSyntheticMobileNetV2({ width: 0.35, inputSize: size, numClasses: 10, seed: 6, weightBits: 8 });
  const int8File = quantGraphToQdqOnnx(g, { weightEncoding: 'int8' });
  const uint8File = quantGraphToQdqOnnx(g, { weightEncoding: 'uint8' });

  it('rewrites every int8 weight to uint8 + zero point 128, leaving everything else as it was', () => {
    const before = decodeModel(int8File);
    const after = decodeModel(toUint8WeightStorage(int8File));
    expect(after.graph.node.map((n) => n.opType)).toEqual(before.graph.node.map((n) => n.opType));
    expect(after.graph.initializer.filter((t) => t.dataType === DataType.INT8)).toEqual([]);
    const inits = new Map(after.graph.initializer.map((t) => [t.name, t]));
    const old = new Map(before.graph.initializer.map((t) => [t.name, t]));
    let weights = 0;
    for (const dq of after.graph.node.filter((n) => n.opType === 'DequantizeLinear')) {
      const w = inits.get(dq.input[0]);
      if (!w) continue; // an activation's DequantizeLinear
      const was = old.get(w.name)!;
      if (was.dataType !== DataType.INT8) {
        expect(w).toEqual(was); // int32 biases
        continue;
      }
      weights++;
      expect(Array.from(w.rawData)).toEqual(Array.from(new Int8Array(was.rawData.buffer, was.rawData.byteOffset, was.rawData.length), (v) => v + 128));
      const zp = inits.get(dq.input[2])!;
      expect(zp.dataType).toBe(DataType.UINT8);
      expect(new Set(zp.rawData)).toEqual(new Set([128]));
      expect(zp.dims).toEqual(inits.get(dq.input[1])!.dims);
    }
    expect(weights).toBe(g.nodes.filter((n) => n.op === 'conv' || n.op === 'dense').length);
  });

  it('computes exactly what the uint8-stored export computes, still fully fused', async () => {
    const n = 4;
    const x = syntheticImages(n, size, 13);
    const rewritten = toUint8WeightStorage(int8File);
    expect(Array.from(await logits(rewritten, x, n, size))).toEqual(Array.from(await logits(uint8File, x, n, size)));
    expect(fusionReport(await optimizedOpCounts(rewritten), expectedKernels(g)).fullyFused).toBe(true);
  });

  it('rewrites only int8-stored 8-bit weights, and only where they saturate', () => {
    expect(needsUint8Storage({ weightEncoding: 'int8', weightBits: 8 }, true)).toBe(true);
    // Manifests from before 7-bit grids existed hold 8-bit weights.
    expect(needsUint8Storage({ weightEncoding: 'int8' }, true)).toBe(true);
    expect(needsUint8Storage({ weightEncoding: 'int8', weightBits: 8 }, false)).toBe(false);
    expect(needsUint8Storage({ weightEncoding: 'int8', weightBits: 7 }, true)).toBe(false);
    expect(needsUint8Storage({ weightEncoding: 'uint8', weightBits: 8 }, true)).toBe(false);
  });
});
