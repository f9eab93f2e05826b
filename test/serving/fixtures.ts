// A served model without training: a synthetic MobileNetV2 QuantGraph exported like the worker does
// (model.onnx + manifest.json), plus helpers to make real images with sharp.
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { QuantGraph } from '../../src/ml/quant-graph.js';
import { quantGraphToFloatOnnx, quantGraphToQdqOnnx } from '../../src/export/onnx-qdq.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, MODEL_FILE, type ModelManifest } from '../../src/export/manifest.js';
import { newModelFromManifest } from '../../src/db/model-rows.js';
import { buildSyntheticMobileNetV2 } from '../../testkit/synthetic-graph.js';
import { expectedKernels } from '../../src/export/fusion-check.js';
import type { ModelRecord } from '../../src/serving/model-store.js';

export interface FixtureModel {
  /** Keys relative to `root`: serve with `new MemoryModelStore(modelFilesIn(root))`. */
  record: ModelRecord;
  graph: QuantGraph;
  dir: string;
  onnxFile: string;
  manifestFile: string;
}

export async function writeFixtureModel(root: string, id: string, opts: { seed?: number; inputSize?: number; classes?: number; createdAt?: Date } = {}): Promise<FixtureModel> {
  const inputSize = opts.inputSize ?? 32;
  const numClasses = opts.classes ?? 5;
  const graph = buildSyntheticMobileNetV2({ width: 0.35, inputSize, numClasses, seed: opts.seed ?? 1 });
  graph.classes = Array.from({ length: numClasses }, (_, i) => `${id}-label-${i}`);
  const bytes = quantGraphToQdqOnnx(graph, { weightEncoding: 'uint8', metadata: { jobId: `job-${id}` } });
  const dir = path.join(root, id);
  await mkdir(dir, { recursive: true });
  const onnxPath = path.join(dir, MODEL_FILE);
  const manifestPath = path.join(dir, MANIFEST_FILE);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const k = expectedKernels(graph);
  const manifest: ModelManifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    jobId: `job-${id}`,
    createdAt: (opts.createdAt ?? new Date()).toISOString(),
    file: MODEL_FILE,
    sha256,
    sizeBytes: bytes.length,
    float32SizeBytes: quantGraphToFloatOnnx(graph).length,
    classes: graph.classes,
    input: { name: graph.input.name, layout: 'NCHW', dtype: 'float32', size: inputSize },
    output: { name: graph.output, dtype: 'float32', meaning: 'logits' },
    preprocess: { resize: 'short-side-then-center-crop', colorSpace: 'srgb', alphaBackground: { r: 255, g: 255, b: 255 }, normalization: graph.normalization },
    quantization: {
      format: 'onnx-qdq', opset: 13, activationType: 'uint8 asymmetric per-tensor', weightType: 'int8 symmetric per-channel', weightEncoding: 'uint8',
      input: graph.input.quant, logits: graph.nodes.at(-1)!.outQuant, convs: k.convs, adds: k.adds, activations: [],
      fusion: { convs: k.convs, qlinearConvs: k.convs, floatConvs: 0, qlinearAdds: k.adds, adds: k.adds, qlinearGlobalAvgPools: 1, qgemms: 1, fullyFused: true },
    },
    accuracy: { images: 0, floatTop1: 0, int8Top1: 0, agreement: 1, maxLogitDiffSteps: 0 },
    checkpoint: { step: 0 },
  };
  await writeFile(onnxPath, bytes);
  await writeFile(manifestPath, JSON.stringify(manifest));
  return {
    graph,
    dir,
    onnxFile: onnxPath,
    manifestFile: manifestPath,
    // The record a worker writes for this export.
    record: {
      ...newModelFromManifest(manifest, { id, onnxKey: `${id}/${MODEL_FILE}`, manifestKey: `${id}/${MANIFEST_FILE}` }),
      createdAt: opts.createdAt ?? new Date(),
      promotedAt: null,
    },
  };
}

/** A colourful w x h test picture (gradient + shapes), encoded as `format`. */
export async function makeImage(format: 'jpeg' | 'png' | 'webp', w = 64, h = 48, seed = 0): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = (y * w + x) * 3;
    raw[i] = (x * 255) / w + seed * 40;
    raw[i + 1] = (y * 255) / h;
    raw[i + 2] = ((x + y + seed * 13) % 32) * 8;
  }
  const img = sharp(raw, { raw: { width: w, height: h, channels: 3 } });
  return format === 'jpeg' ? img.jpeg().toBuffer() : format === 'png' ? img.png().toBuffer() : img.webp().toBuffer();
}
