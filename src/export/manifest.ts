// The JSON manifest written beside every exported model.onnx. It is the whole contract between the
// exporter and the server: how to turn a picture into the model's input, what the outputs mean, and
// what the export measured. One zod schema is the source of truth: the exporter's type, the check
// of every manifest read back from the artifact store (a file of any age or origin, so checked,
// never trusted), the Model row (src/db/model-rows.ts newModelFromManifest) and the API's model
// summary (src/jobs/model-view.ts) all come from it. Plain data and zod, no tfjs, so the API can
// import it.
import { z } from 'zod';
import type { ActQuant } from '../ml/quant-graph.js';
import { evaluationProblem, StoredEvaluation } from './evaluation.js';

export const MANIFEST_FORMAT = 'qatserve-model';
export const MANIFEST_VERSION = 1;
/** The two files of an exported model, side by side in one directory (or store prefix). */
export const MODEL_FILE = 'model.onnx';
export const MANIFEST_FILE = 'manifest.json';

/** uint8 asymmetric activation quantization: real = scale * (q - zeroPoint). The ML layer's ActQuant. */
const ActQuantSchema = z.object({ scale: z.number(), zeroPoint: z.number().int() }) satisfies z.ZodType<ActQuant>;

/** What ONNX Runtime made of the graph (src/export/fusion-check.ts counts it). */
export const FusionReport = z.object({
  convs: z.number().int(),
  qlinearConvs: z.number().int(),
  floatConvs: z.number().int(),
  qlinearAdds: z.number().int(),
  adds: z.number().int(),
  qlinearGlobalAvgPools: z.number().int(),
  qgemms: z.number().int(),
  /** Every conv, add, pool and dense layer runs as an integer kernel. */
  fullyFused: z.boolean(),
});
export type FusionReport = z.infer<typeof FusionReport>;

export const WeightEncoding = z.enum(['int8', 'uint8']);
export type WeightEncoding = z.infer<typeof WeightEncoding>;

const rgb = z.tuple([z.number(), z.number(), z.number()]);

/** The model's input: [N, 3, size, size], N dynamic. */
export const ManifestInput = z.object({
  name: z.string(),
  layout: z.literal('NCHW'),
  dtype: z.literal('float32'),
  size: z.number().int().describe('Width and height of the square input image, in pixels.'),
});

/** The model's output: one logit per class, in `classes` order. */
const ManifestOutput = z.object({ name: z.string(), dtype: z.literal('float32'), meaning: z.literal('logits') });

/**
 * How /predict (and training) turn an image into the input: EXIF rotation applied, alpha
 * composited on `background`, short side scaled to `size`, centre crop, sRGB 8-bit, then
 * (v / 255 - mean) / std per channel.
 */
const ManifestPreprocess = z.object({
  resize: z.literal('short-side-then-center-crop'),
  colorSpace: z.literal('srgb'),
  alphaBackground: z.object({ r: z.number(), g: z.number(), b: z.number() }),
  normalization: z.object({ mean: rgb, std: rgb }),
});

const ClassNames = z.array(z.string()).describe('Class names, in the order of the model outputs.');
/** The weight grid: 7 bits ([-63, 63]) or 8 ([-127, 127]). */
const WeightBits = z.union([z.literal(7), z.literal(8)]);

/**
 * What a model.onnx file says about itself in its own metadata (src/export/file-contract.ts): the
 * manifest's fields needed to run it, so a file downloaded alone still can be.
 */
export const FileContract = z.object({
  classes: ClassNames,
  input: ManifestInput,
  output: ManifestOutput,
  preprocess: ManifestPreprocess,
  quantization: z.object({ weightEncoding: WeightEncoding, weightBits: WeightBits }),
});
export type FileContract = z.infer<typeof FileContract>;

/** What the export measured on the verification images. */
export const ManifestAccuracy = z.object({
  /** Validation images the figures below were measured on. */
  images: z.number().int(),
  // No .describe() on these: the Model row's nullable copies carry the API's descriptions
  // (src/db/model-rows.ts), and a described inner schema would turn their JSON Schema into anyOf.
  /** Top-1 of the tfjs float model (fake quantization off) on the verification images. */
  floatTop1: z.number(),
  /** Top-1 of the int8 file (ONNX Runtime) on the verification images. */
  int8Top1: z.number(),
  /** Share of images where ORT's int8 top-1 equals the tfjs fake-quant model's top-1. */
  agreement: z.number(),
  /** Largest |ORT - tfjs fake-quant| logit difference, in logit quantization steps. */
  maxLogitDiffSteps: z.number(),
  /** Largest |ORT - plain-JS integer reference of the int8 graph| on a few images (null: skipped; absent in older manifests). */
  maxStepsVsIntegerReference: z.number().nullable().optional(),
});

export const ModelManifest = z
  .object({
    format: z.literal(MANIFEST_FORMAT),
    version: z.literal(MANIFEST_VERSION),
    jobId: z.string().describe('The training job that produced the model.'),
    /** When the export wrote the manifest (ISO 8601). */
    createdAt: z.string(),
    /** File name of the model, beside the manifest. */
    file: z.string(),
    sha256: z.string().describe('SHA-256 of model.onnx, hex.'),
    sizeBytes: z.number().int().describe('Size of model.onnx (int8) in bytes.'),
    float32SizeBytes: z.number().int().describe('Size of the same network written as fp32 ONNX, in bytes (not kept).'),
    classes: ClassNames,
    input: ManifestInput,
    output: ManifestOutput,
    preprocess: ManifestPreprocess,
    quantization: z.object({
      format: z.literal('onnx-qdq'),
      opset: z.number().int(),
      activationType: z.literal('uint8 asymmetric per-tensor'),
      weightType: z.literal('int8 symmetric per-channel'),
      /** 'uint8' stores the same int8 values + 128 (zero point 128); see onnx-qdq.ts. */
      weightEncoding: WeightEncoding,
      /** Weight grid: 7 bits ([-63, 63]) or 8 ([-127, 127]); absent in manifests written before it existed (8). */
      weightBits: WeightBits.optional(),
      input: ActQuantSchema,
      logits: ActQuantSchema,
      convs: z.number().int(),
      adds: z.number().int(),
      /** Per activation tensor: scale and zero point, in graph order. */
      activations: z.array(z.object({ tensor: z.string(), scale: z.number(), zeroPoint: z.number().int() })),
      fusion: FusionReport,
    }),
    accuracy: ManifestAccuracy,
    /** The shipped int8 file on the whole validation split (completeEvaluation gives it today's shape). Absent in manifests written before it existed. */
    evaluation: StoredEvaluation.optional(),
    /** Problems found at export that do not stop the model from serving, e.g. MODEL_AT_CHANCE. */
    warnings: z.array(z.object({ code: z.string(), message: z.string() })).optional(),
    checkpoint: z.object({ step: z.number().int() }),
  })
  .superRefine((m, ctx) => {
    // What the types cannot say: a model answers one score per class, for a picture of some size.
    if (m.classes.length === 0) ctx.addIssue({ code: 'custom', path: ['classes'], message: 'a model has at least one class' });
    if (m.input.size < 1) ctx.addIssue({ code: 'custom', path: ['input', 'size'], message: 'must be at least 1' });
    const problem = m.evaluation ? evaluationProblem(m.evaluation, m.classes.length) : null;
    if (problem) ctx.addIssue({ code: 'custom', path: ['evaluation'], message: problem });
  });
export type ModelManifest = z.infer<typeof ModelManifest>;

/**
 * A manifest read back from storage, checked against the schema: the manifest, or what is wrong
 * with it (the first few issues, each with its field path), for an error that names the model.
 */
export function parseManifest(raw: unknown): { manifest: ModelManifest; problem: null } | { manifest: null; problem: string } {
  const parsed = ModelManifest.safeParse(raw);
  return parsed.success ? { manifest: parsed.data, problem: null } : { manifest: null, problem: issuesText(parsed.error) };
}

/** The first few issues of a failed check, each with its field path. */
export function issuesText(error: z.ZodError): string {
  const issues = error.issues;
  const listed = issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  if (issues.length > listed.length) listed.push(`and ${issues.length - listed.length} more`);
  return listed.join('; ');
}
