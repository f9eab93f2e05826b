// A served model without training: a synthetic MobileNetV2 QuantGraph exported like the worker does
// (model.onnx + manifest.json), plus helpers to make real images with sharp.
import path from 'node:path';
import sharp from 'sharp';
import type { QuantGraph } from '../../src/ml/quant-graph.js';
import { MANIFEST_FILE, MODEL_FILE, type WeightEncoding } from '../../src/export/manifest.js';
import type { ModelEvaluation } from '../../src/export/evaluation.js';
import { newModelFromManifest } from '../../src/db/model-rows.js';
import { buildSyntheticMobileNetV2 } from '../../testkit/synthetic-graph.js';
import { writeSyntheticExport } from '../../testkit/synthetic-export.js';
import type { ModelRecord } from '../../src/serving/model-store.js';
import type { Prisma } from '../../src/db/database.js';

export interface FixtureModel {
  /** Keys relative to `root`: serve with `new MemoryModelStore(modelFilesIn(root))`. */
  record: ModelRecord;
  graph: QuantGraph;
  dir: string;
  onnxFile: string;
  manifestFile: string;
}

export async function writeFixtureModel(
  root: string,
  id: string,
  opts: { seed?: number; inputSize?: number; classes?: number; createdAt?: Date; weightEncoding?: WeightEncoding; evaluation?: ModelEvaluation } = {},
): Promise<FixtureModel> {
  const inputSize = opts.inputSize ?? 32;
  const numClasses = opts.classes ?? 5;
  const graph = buildSyntheticMobileNetV2({ width: 0.35, inputSize, numClasses, seed: opts.seed ?? 1 });
  graph.classes = Array.from({ length: numClasses }, (_, i) => `${id}-label-${i}`);
  const dir = path.join(root, id);
  const { manifest, onnxFile, manifestFile } = await writeSyntheticExport(dir, graph, {
    jobId: `job-${id}`,
    // uint8 by default: the synthetic graph's 8-bit weights stored as int8 saturate on x86 without VNNI.
    weightEncoding: opts.weightEncoding ?? 'uint8',
    createdAt: opts.createdAt,
    evaluation: opts.evaluation,
  });
  return {
    graph,
    dir,
    onnxFile,
    manifestFile,
    // The record a worker writes for this export.
    record: {
      ...newModelFromManifest(manifest, { id, onnxKey: `${id}/${MODEL_FILE}`, manifestKey: `${id}/${MANIFEST_FILE}` }),
      createdAt: opts.createdAt ?? new Date(),
      promotedAt: null,
    },
  };
}

/**
 * Inserts the fixture's Model row under `jobId` at `createdAt`: the fields the worker writes, with
 * the order of creation under the test's control (recordJobModel stamps the current time).
 */
export async function insertModelRow(prisma: Prisma, m: FixtureModel, jobId: string, createdAt: Date): Promise<void> {
  const r = m.record;
  await prisma.model.create({
    data: {
      id: r.id,
      jobId,
      createdAt,
      onnxKey: r.onnxKey,
      manifestKey: r.manifestKey,
      sizeBytes: r.sizeBytes,
      float32SizeBytes: r.float32SizeBytes,
      sha256: r.sha256,
      inputSize: r.inputSize,
      classes: JSON.stringify(r.classes),
      floatTop1: 0.5,
      int8Top1: 0.5,
      agreement: 1,
    },
  });
}

/** A colourful w x h test picture (gradient + shapes), encoded as `format`. */
export async function makeImage(format: 'jpeg' | 'png' | 'webp', w = 64, h = 48, seed = 0): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      raw[i] = (x * 255) / w + seed * 40;
      raw[i + 1] = (y * 255) / h;
      raw[i + 2] = ((x + y + seed * 13) % 32) * 8;
    }
  const img = sharp(raw, { raw: { width: w, height: h, channels: 3 } });
  return format === 'jpeg' ? img.jpeg().toBuffer() : format === 'png' ? img.png().toBuffer() : img.webp().toBuffer();
}
