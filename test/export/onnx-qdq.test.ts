import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import type { QuantGraph } from '../../src/ml/quant-graph.js';
import { quantGraphToFloatOnnx } from '../../src/export/onnx-float.js';
import { quantGraphToQdqOnnx } from '../../src/export/onnx-qdq.js';
import { DataType, decodeModel } from '../../src/export/onnx-proto.js';
import { runIntegerReference } from '../../src/export/qdq-reference.js';
import { runQdqReference } from '../../testkit/qdq-reference.js';
import { buildSyntheticMobileNetV2, syntheticImages } from '../../testkit/synthetic-graph.js';
import { expectedKernels, fusionReport, optimizedOpCounts } from '../../src/export/fusion-check.js';
import { onnxChecker } from './onnx-checker.js';

async function runOrt(model: Uint8Array, x: Float32Array, n: number, size: number, level: 'disabled' | 'all' = 'all'): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, graphOptimizationLevel: level });
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [n, 3, size, size]) });
  const data = out[session.outputNames[0]].data as Float32Array;
  await session.release();
  return data;
}

function maxDiffSteps(a: Float32Array, b: Float32Array, scale: number): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / scale);
  return m;
}

/** One 1x1 conv, 3 -> 2 channels, with numbers small enough to work out by hand. */
function tinyGraph(): QuantGraph {
  return {
    inputSize: 1,
    numClasses: 2,
    classes: ['a', 'b'],
    normalization: { mean: [0, 0, 0], std: [1, 1, 1] },
    input: { name: 'input', quant: { scale: 0.02, zeroPoint: 128 } },
    nodes: [
      {
        op: 'conv',
        name: 'c',
        input: 'input',
        output: 'y',
        outQuant: { scale: 6 / 255, zeroPoint: 0 },
        kernel: [1, 1],
        strides: [1, 1],
        pads: [0, 0, 0, 0],
        group: 1,
        inChannels: 3,
        outChannels: 2,
        weightInt8: Int8Array.from([127, 0, -127, 64, 64, 64]),
        weightScale: Float32Array.from([0.01, 0.02]),
        bias: Float32Array.from([0.1, -0.2]),
        activation: 'relu6',
      },
    ],
    output: 'y',
  };
}

describe('QDQ ONNX writer', () => {
  it('computes a 1x1 conv + ReLU6 as worked out by hand', async () => {
    // x = [1, 0.5, -1] quantizes exactly (scale 0.02, zp 128 -> 178, 153, 78).
    // ch0: 1.27*1 + 0 - 1.27*(-1) + 0.1 = 2.64 -> q = round(2.64 / (6/255)) = 112 -> 2.635294
    // ch1: 1.28 * (1 + 0.5 - 1) - 0.2 = 0.44 -> q = round(18.7) = 19 -> 0.447059
    const g = tinyGraph();
    const x = Float32Array.from([1, 0.5, -1]);
    const expected = [112 * (6 / 255), 19 * (6 / 255)];
    for (const weightEncoding of ['int8', 'uint8'] as const) {
      const y = await runOrt(quantGraphToQdqOnnx(g, { weightEncoding }), x, 1, 1);
      expect(Array.from(y)[0]).toBeCloseTo(expected[0], 5);
      expect(Array.from(y)[1]).toBeCloseTo(expected[1], 5);
    }
    expect(Array.from(runQdqReference(g, x, 1))[0]).toBeCloseTo(expected[0], 5);
    expect(Array.from(runIntegerReference(g, x, 1))[1]).toBeCloseTo(expected[1], 5);
  });

  it('stores int8 per-channel weights, int32 biases at inputScale*weightScale, and Q/DQ on every activation', () => {
    const g = buildSyntheticMobileNetV2({ width: 0.35, inputSize: 32, numClasses: 10, seed: 3 });
    const model = decodeModel(quantGraphToQdqOnnx(g));
    const inits = new Map(model.graph.initializer.map((t) => [t.name, t]));
    const producer = new Map(model.graph.node.flatMap((n) => n.output.map((o) => [o, n] as const)));
    const f32 = (t: { rawData: Uint8Array }): Float32Array => new Float32Array(new Uint8Array(t.rawData).buffer);

    expect(model.opsetImport[0].version).toBeGreaterThanOrEqual(13);
    const input = model.graph.input[0];
    expect(input.type.tensorType.shape.dim.map((d) => d.dimValue ?? d.dimParam)).toEqual(['N', 3, 32, 32]);

    const convs = model.graph.node.filter((n) => n.opType === 'Conv');
    expect(convs).toHaveLength(expectedKernels(g).convs);
    for (const conv of convs) {
      const wDq = producer.get(conv.input[1])!;
      expect(wDq.opType).toBe('DequantizeLinear');
      expect(wDq.attribute![0]).toMatchObject({ name: 'axis', i: 0 });
      expect(inits.get(wDq.input[0])!.dataType).toBe(DataType.INT8);
      // Symmetric int8 weights: no zero point (optional, 0 by default).
      expect(wDq.input).toHaveLength(2);
      const bDq = producer.get(conv.input[2])!;
      expect(bDq.opType).toBe('DequantizeLinear');
      expect(inits.get(bDq.input[0])!.dataType).toBe(DataType.INT32);
      expect(bDq.input).toHaveLength(2);
      // Bias scale = input activation scale x weight scale, per channel: written as that Mul of
      // the input's activation scale and the weight scale tensor.
      const inDq = producer.get(conv.input[0])!;
      const mul = producer.get(bDq.input[1])!;
      expect(mul.opType).toBe('Mul');
      expect(mul.input).toEqual([inDq.input[1], wDq.input[1]]);
      expect(f32(inits.get(inDq.input[1])!)).toHaveLength(1);
      expect(f32(inits.get(wDq.input[1])!)).toHaveLength(inits.get(wDq.input[0])!.dims[0]);
    }
    // The 3-channel input is padded to 4 with its zero point (a faster stem conv in ORT); the stem
    // weights get an all-zero 4th input channel, so the result is unchanged.
    const pad = model.graph.node.find((n) => n.opType === 'Pad')!;
    expect(producer.get(pad.input[0])!.opType).toBe('QuantizeLinear');
    expect(Array.from(new BigInt64Array(new Uint8Array(inits.get(pad.input[1])!.rawData).buffer), Number)).toEqual([0, 0, 0, 0, 0, 1, 0, 0]);
    const stemW = inits.get(producer.get(convs[0].input[1])!.input[0])!;
    expect(stemW.dims.slice(0, 2)).toEqual([g.nodes[0].op === 'conv' ? g.nodes[0].outChannels : 0, 4]);
    const stemVals = new Int8Array(new Uint8Array(stemW.rawData).buffer);
    for (let o = 0; o < stemW.dims[0]; o++) for (let k = 0; k < 9; k++) expect(stemVals[(o * 4 + 3) * 9 + k]).toBe(0);
    // ReLU6 outputs quantized inside [0, 6] need no Clip: QuantizeLinear clamps there itself.
    expect(model.graph.node.filter((n) => n.opType === 'Clip')).toHaveLength(0);
    // Short names: no node names, and every tensor but the graph's input and output is short.
    expect(model.graph.node.every((n) => !n.name)).toBe(true);
    const longNames = model.graph.initializer.map((t) => t.name).filter((nm) => nm.length > 3);
    expect(longNames).toEqual([]);
    // One QuantizeLinear per activation tensor: the input plus every node's output.
    const qs = model.graph.node.filter((n) => n.opType === 'QuantizeLinear');
    expect(qs).toHaveLength(g.nodes.length + 1);
    for (const q of qs) expect(inits.get(q.input[2])!.dataType).toBe(DataType.UINT8);
    // ReLU6 ranges inside [0, 6] with zero point 0, so ORT can drop the Clip.
    for (const node of g.nodes)
      if (node.op === 'conv' && node.activation === 'relu6') {
        expect(node.outQuant.zeroPoint).toBe(0);
        expect(Math.fround(node.outQuant.scale * 255)).toBeLessThanOrEqual(6);
      }
  });

  it('runs with a dynamic batch, and ORT fused output matches the integer reference within 2 steps', async () => {
    const size = 48;
    const g = buildSyntheticMobileNetV2({ width: 0.35, inputSize: size, numClasses: 10, seed: 2 });
    const step = g.nodes.at(-1)!.outQuant.scale;
    const n = 6;
    const x = syntheticImages(n, size, 11);
    const model = quantGraphToQdqOnnx(g, { weightEncoding: 'uint8' });
    const ref = runIntegerReference(g, x, n);
    const fused = await runOrt(model, x, n, size);
    expect(maxDiffSteps(fused, ref, step)).toBeLessThanOrEqual(2);
    // Batch 1 gives the same logits as the batch.
    const one = await runOrt(model, x.subarray(0, 3 * size * size), 1, size);
    expect(maxDiffSteps(one, fused.subarray(0, 10), step)).toBe(0);
    // The float simulation of the QDQ semantics agrees on the decision.
    const sim = runQdqReference(g, x, n);
    const argmax = (a: Float32Array, i: number): number => {
      const row = Array.from(a.subarray(i * 10, i * 10 + 10));
      return row.indexOf(Math.max(...row));
    };
    let agree = 0;
    for (let i = 0; i < n; i++) if (argmax(sim, i) === argmax(fused, i)) agree++;
    expect(agree).toBeGreaterThanOrEqual(n - 1);
  });

  it('the float simulation matches ORT running the QDQ graph unfused, layer by layer', async () => {
    // Whole-network comparisons of float vs integer arithmetic amplify rare rounding flips; a few
    // layers deep there is nothing to amplify, so the semantics must agree to one step.
    const size = 32;
    const full = buildSyntheticMobileNetV2({ width: 0.35, inputSize: size, numClasses: 10, seed: 5 });
    const x = syntheticImages(2, size, 3);
    for (const k of [1, 3, 6, 9]) {
      const node = full.nodes[k - 1];
      const g = { ...full, nodes: full.nodes.slice(0, k), output: node.output };
      const ort = await runOrt(quantGraphToQdqOnnx(g), x, 2, size, 'disabled');
      expect(maxDiffSteps(ort, runQdqReference(g, x, 2), node.outQuant.scale)).toBeLessThanOrEqual(1);
    }
  });

  it('int8-stored weights match the integer reference when no u8s8 saturation can occur (7-bit weights)', async () => {
    // On x86 without VNNI, ORT's u8s8 kernels sum pairs of u8*s8 products in int16 (vpmaddubsw)
    // and saturate; with |w| <= 63 a pair stays below 32767, so int8 storage is exact too.
    const size = 32;
    const g = buildSyntheticMobileNetV2({ width: 0.35, inputSize: size, numClasses: 10, seed: 4, weightBits: 7 });
    let maxAbs = 0;
    for (const node of g.nodes) if (node.op === 'conv' || node.op === 'dense') for (const v of node.weightInt8) maxAbs = Math.max(maxAbs, Math.abs(v));
    expect(maxAbs).toBe(63);
    const x = syntheticImages(4, size, 9);
    const fused = await runOrt(quantGraphToQdqOnnx(g, { weightEncoding: 'int8' }), x, 4, size);
    expect(maxDiffSteps(fused, runIntegerReference(g, x, 4), g.nodes.at(-1)!.outQuant.scale)).toBeLessThanOrEqual(2);
  });

  it('refuses a 7-bit graph with a weight outside [-63, 63] (int8 storage would not be exact)', () => {
    const g = buildSyntheticMobileNetV2({ width: 0.35, inputSize: 32, numClasses: 10, seed: 4, weightBits: 7 });
    const conv = g.nodes.find((n) => n.op === 'conv')!;
    if (conv.op === 'conv') conv.weightInt8[0] = 64;
    expect(() => quantGraphToQdqOnnx(g)).toThrow(/weight 64 outside the 7-bit grid/);
  });

  it('descriptive names, on request, name every node and tensor after the layer', () => {
    const g = buildSyntheticMobileNetV2({ width: 0.35, inputSize: 32, numClasses: 10, seed: 4, weightBits: 7 });
    const model = decodeModel(quantGraphToQdqOnnx(g, { names: 'descriptive' }));
    expect(model.graph.node.find((n) => n.opType === 'Conv')!.name).toBe('stem/Conv');
    expect(model.graph.initializer.map((t) => t.name)).toContain('stem/weight_quantized');
  });
});

describe('fusion and size (MobileNetV2 1.0 at 224)', () => {
  const g = buildSyntheticMobileNetV2({ width: 1.0, inputSize: 224, numClasses: 1000, seed: 1, calibrationImages: 1, weightBits: 7 });

  for (const weightEncoding of ['int8', 'uint8'] as const) {
    it(`ORT fuses every conv into QLinearConv, adds, pool and classifier too (${weightEncoding} weights)`, async () => {
      const ops = await optimizedOpCounts(quantGraphToQdqOnnx(g, { weightEncoding }));
      const report = fusionReport(ops, expectedKernels(g));
      expect(report.convs).toBe(52);
      expect(report.qlinearConvs).toBe(report.convs);
      expect(report.floatConvs).toBe(0);
      expect(report.qlinearAdds).toBe(10);
      expect(report.qlinearGlobalAvgPools).toBe(1);
      expect(report.qgemms).toBe(1);
      expect(ops['Clip'] ?? 0).toBe(0);
      expect(report.fullyFused).toBe(true);
    });
  }

  it("the int8 files (both weight encodings) and the fp32 file pass ONNX's reference checker", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'qatserve-onnx-check-'));
    try {
      const files = { int8: quantGraphToQdqOnnx(g), uint8: quantGraphToQdqOnnx(g, { weightEncoding: 'uint8' }), fp32: quantGraphToFloatOnnx(g) };
      const paths = await Promise.all(
        Object.entries(files).map(async ([name, bytes]) => {
          const file = path.join(dir, `${name}.onnx`);
          await writeFile(file, bytes);
          return file;
        }),
      );
      expect(onnxChecker(paths).map((c) => c.problem)).toEqual([null, null, null]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the int8 file is at most 30% of the fp32 file, and the fp32 file computes the float network', async () => {
    const int8 = quantGraphToQdqOnnx(g);
    const fp32 = quantGraphToFloatOnnx(g);
    expect(int8.length / fp32.length).toBeLessThanOrEqual(0.3);
    // The training config's default model (width 0.35, 32x32, 10 classes) too: its per-channel
    // scales and biases weigh more against its smaller weights.
    const small = buildSyntheticMobileNetV2({ width: 0.35, inputSize: 32, numClasses: 10, seed: 1, weightBits: 7 });
    expect(quantGraphToQdqOnnx(small).length / quantGraphToFloatOnnx(small).length).toBeLessThanOrEqual(0.3);
    const x = syntheticImages(1, 224, 5);
    const ortOut = await runOrt(fp32, x, 1, 224);
    const ref = runQdqReference(g, x, 1, { quantize: false });
    let maxRel = 0;
    const range = Math.max(...Array.from(ref).map(Math.abs));
    for (let i = 0; i < ref.length; i++) maxRel = Math.max(maxRel, Math.abs(ortOut[i] - ref[i]) / range);
    expect(maxRel).toBeLessThan(1e-3);
  });
});
