// Serving benchmarks for MobileNetV2 1.0 at 224 with random weights and calibrated (realistic)
// activation ranges, exported exactly as a trained model is.
//
//   npx tsx bench/predict.ts model            # model-only latency: batch 1, one ORT thread
//   npx tsx bench/predict.ts http             # HTTP load: autocannon, 16 connections, 20 s, 224x224 JPEG
//   npx tsx bench/predict.ts all
// Options: --runs N (model, default 300), --seconds S, --connections C, --workers W (pool size),
// --encoding int8|uint8 (weight storage, default both for `model`, uint8 for `http`),
// --rate R (http: open loop at R req/s total, to read latency at a given load).
//
// Each mode prints one comparable line (plus context lines starting with '#').
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { quantGraphToFloatOnnx, quantGraphToQdqOnnx } from '../src/export/onnx-qdq.js';
import { buildSyntheticMobileNetV2, syntheticImages } from '../src/export/synthetic-graph.js';
import { expectedKernels, fusionReport, optimizedOpCounts } from '../src/export/fusion-check.js';
import { MANIFEST_FORMAT, MANIFEST_VERSION, type ModelManifest } from '../src/export/manifest.js';
import type { QuantGraph } from '../src/ml/quant-graph.js';
import { errorsPlugin } from '../src/api/plugins/errors.js';
import { predictRoutes } from '../src/api/routes/predict.js';
import { servingPlugin } from '../src/serving/plugin.js';
import { ServingService } from '../src/serving/prediction-service.js';
import { MemoryModelStore } from '../src/serving/model-store.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '20' },
    connections: { type: 'string', default: '16' },
    workers: { type: 'string', default: '2' },
    encoding: { type: 'string' },
    /** Open-loop: a fixed total request rate (req/s) instead of as fast as 16 connections go. */
    rate: { type: 'string' },
  },
});
const mode = positionals[0] ?? 'model';
const SIZE = 224;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function modelLatency(label: string, bytes: Uint8Array, runs: number): Promise<number> {
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
  const x = new ort.Tensor('float32', syntheticImages(1, SIZE, 42), [1, 3, SIZE, SIZE]);
  const feeds = { [session.inputNames[0]!]: x };
  for (let i = 0; i < 30; i++) await session.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  await session.release();
  times.sort((a, b) => a - b);
  const p50 = percentile(times, 50);
  console.log(`predict-model ${label}: p50 ${p50.toFixed(2)} ms  p90 ${percentile(times, 90).toFixed(2)} ms  min ${times[0]!.toFixed(2)} ms  (${runs} runs, batch 1, 1 thread, ${(bytes.length / 1e6).toFixed(2)} MB)`);
  return p50;
}

async function benchModel(graph: QuantGraph): Promise<void> {
  const runs = Number(values.runs);
  const encodings = values.encoding ? [values.encoding as 'int8' | 'uint8'] : (['int8', 'uint8'] as const);
  const fp32 = quantGraphToFloatOnnx(graph);
  for (const enc of encodings) {
    const bytes = quantGraphToQdqOnnx(graph, { weightEncoding: enc });
    const fusion = fusionReport(await optimizedOpCounts(bytes), expectedKernels(graph));
    console.log(`# ${enc}: QLinearConv ${fusion.qlinearConvs}/${fusion.convs}, QLinearAdd ${fusion.qlinearAdds}/${fusion.adds}, fully fused: ${fusion.fullyFused}, size ${(100 * bytes.length / fp32.length).toFixed(1)}% of fp32`);
    await modelLatency(`int8 QDQ (${enc} weight storage)`, bytes, runs);
  }
  await modelLatency('fp32', fp32, runs);
}

async function writeModel(dir: string, graph: QuantGraph, encoding: 'int8' | 'uint8'): Promise<MemoryModelStore> {
  const bytes = quantGraphToQdqOnnx(graph, { weightEncoding: encoding });
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const k = expectedKernels(graph);
  const manifest: ModelManifest = {
    format: MANIFEST_FORMAT, version: MANIFEST_VERSION, jobId: 'bench', createdAt: new Date().toISOString(), file: 'model.onnx', sha256,
    sizeBytes: bytes.length, float32SizeBytes: 0, classes: graph.classes,
    input: { name: graph.input.name, layout: 'NCHW', dtype: 'float32', size: SIZE },
    output: { name: graph.output, dtype: 'float32', meaning: 'logits' },
    preprocess: { resize: 'short-side-then-center-crop', colorSpace: 'srgb', alphaBackground: { r: 255, g: 255, b: 255 }, normalization: graph.normalization },
    quantization: {
      format: 'onnx-qdq', opset: 13, activationType: 'uint8 asymmetric per-tensor', weightType: 'int8 symmetric per-channel', weightEncoding: encoding,
      input: graph.input.quant, logits: graph.nodes.at(-1)!.outQuant, convs: k.convs, adds: k.adds, activations: [],
      fusion: fusionReport(await optimizedOpCounts(bytes), k),
    },
    accuracy: { images: 0, floatTop1: 0, int8Top1: 0, agreement: 1, maxLogitDiffSteps: 0 },
    checkpoint: { step: 0 },
  };
  await writeFile(path.join(dir, 'model.onnx'), bytes);
  await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  const store = new MemoryModelStore();
  store.add({
    id: 'bench', jobId: 'bench', createdAt: new Date(), onnxPath: path.join(dir, 'model.onnx'), manifestPath: path.join(dir, 'manifest.json'),
    sizeBytes: bytes.length, float32SizeBytes: 0, sha256, inputSize: SIZE, classes: graph.classes, floatTop1: null, int8Top1: null, agreement: null, promotedAt: null,
  });
  return store;
}

async function benchHttp(graph: QuantGraph): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'qatserve-bench-'));
  const encoding = (values.encoding as 'int8' | 'uint8' | undefined) ?? 'uint8';
  const store = await writeModel(dir, graph, encoding);
  const serving = new ServingService({ store, size: Number(values.workers), batchWindowMs: 2, maxBatch: 8, pollMs: 0 });
  const app = Fastify({ logger: false });
  await app.register(errorsPlugin);
  await app.register(servingPlugin, { service: serving });
  await app.register(predictRoutes, { serving });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const raw = Buffer.alloc(SIZE * SIZE * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + (i >> 10)) & 255;
  const jpeg = await sharp(raw, { raw: { width: SIZE, height: SIZE, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
  try {
    const result = await autocannon({
      url: `${url}/v1/predict`,
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body: jpeg,
      connections: Number(values.connections),
      duration: Number(values.seconds),
      ...(values.rate ? { overallRate: Number(values.rate) } : {}),
    });
    const errors = result.errors + result.timeouts + result.non2xx;
    console.log(`# ${values.workers} inference workers, ${encoding} weight storage, ${jpeg.length}-byte ${SIZE}x${SIZE} JPEG, ${values.connections} connections, ${values.seconds} s${values.rate ? `, open loop at ${values.rate} req/s` : ''}`);
    // Closed loop (no --rate): by Little's law p50 is about connections / throughput.
    console.log(
      `predict-http: p50 ${result.latency.p50} ms  p99 ${result.latency.p99} ms  ${result.requests.average.toFixed(1)} req/s  errors ${errors}  (${result.requests.total} requests)`,
    );
  } finally {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const t0 = Date.now();
const graph = buildSyntheticMobileNetV2({ width: 1.0, inputSize: SIZE, numClasses: 1000, seed: 1, calibrationImages: 1 });
console.log(`# MobileNetV2 1.0 @ ${SIZE}, 1000 classes, random weights, ranges calibrated on 1 image (${Date.now() - t0} ms); ${ort.env.versions?.common ?? ''}`);
if (mode === 'model' || mode === 'all') await benchModel(graph);
if (mode === 'http' || mode === 'all') await benchHttp(graph);
