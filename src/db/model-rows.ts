// The one module that writes and reads Model rows. A Model row records an exported int8 model:
// where its files are in the artifact store (keys, never paths), their size and sha256, and what
// the export measured. The worker writes it (src/jobs/job-lifecycle.ts, inside the transaction
// that marks the job succeeded); the API reads and promotes it (src/serving/model-store.ts).
import { z } from 'zod';
import { ModelEvaluation } from '../export/evaluation.js';
import { ManifestAccuracy, ManifestInput, ModelManifest } from '../export/manifest.js';
import type { Prisma, Tx } from './database.js';
import { createdBefore, NEWEST_FIRST, type RowKey } from './keyset.js';

/**
 * What a Model row records of its manifest, each field the manifest's own schema piece: the
 * export's figures are copied once, by newModelFromManifest, and the API's ModelSummary extends
 * this. The accuracy columns are nullable in the Prisma schema, so their copies here are too.
 */
export const ModelFacts = z.object({
  jobId: ModelManifest.shape.jobId,
  inputSize: ManifestInput.shape.size,
  classes: ModelManifest.shape.classes,
  sizeBytes: ModelManifest.shape.sizeBytes,
  float32SizeBytes: ModelManifest.shape.float32SizeBytes,
  sha256: ModelManifest.shape.sha256,
  floatTop1: ManifestAccuracy.shape.floatTop1
    .nullable()
    .describe(
      "Top-1 of the trained model in float (tfjs, fake quantization off) on the export's verification images: what quantization cost, against int8Top1.",
    ),
  int8Top1: ManifestAccuracy.shape.int8Top1.nullable().describe("Top-1 of the int8 ONNX file on the export's verification images."),
  agreement: ManifestAccuracy.shape.agreement
    .nullable()
    .describe('Share of verification images where the int8 file and the fake-quant model agree on the top-1 class.'),
  verificationImages: ManifestAccuracy.shape.images
    .nullable()
    .describe(
      'How many validation images (spread over the split) floatTop1, int8Top1 and agreement were measured on. Null for models exported before it was recorded.',
    ),
  validationImages: ModelEvaluation.shape.images
    .nullable()
    .describe(
      "The final evaluation's images: the whole validation split. Null for models exported before it was recorded (GET /v1/models/{id}/evaluation may still have it).",
    ),
  validationTop1: ModelEvaluation.shape.top1
    .nullable()
    .describe('Top-1 of the int8 file on the whole validation split (the final evaluation): the figure to compare models by.'),
  validationTop5: ModelEvaluation.shape.top5.nullable().describe('Top-5 of the int8 file on the whole validation split (the final evaluation).'),
});
export type ModelFacts = z.infer<typeof ModelFacts>;

/** Where the model's files are in the artifact store (keys, never paths), and its id. */
export interface ModelKeys {
  id: string;
  /** Artifact store key of model.onnx. */
  onnxKey: string;
  /** Artifact store key of manifest.json. */
  manifestKey: string;
}

/** What the worker records after a verified export: newModelFromManifest builds it. */
export type NewModel = ModelKeys & ModelFacts;

export type ModelRecord = NewModel & {
  createdAt: Date;
  promotedAt: Date | null;
  /**
   * Whether the model may serve without a promotion: its job was created by an admin key or with
   * auth off (absent: true). A `train` key's models serve only once an admin promotes them.
   */
  autoServe?: boolean;
};

/** The row as both providers return it: classes as JSON text. */
export type ModelRow = Omit<ModelRecord, 'classes'> & { classes: string };

/** The Model row of an exported model: its manifest's figures, at the given keys. */
export function newModelFromManifest(m: ModelManifest, keys: ModelKeys): NewModel {
  return {
    ...keys,
    jobId: m.jobId,
    inputSize: m.input.size,
    classes: [...m.classes],
    sizeBytes: m.sizeBytes,
    float32SizeBytes: m.float32SizeBytes,
    sha256: m.sha256,
    floatTop1: m.accuracy.floatTop1,
    int8Top1: m.accuracy.int8Top1,
    agreement: m.accuracy.agreement,
    verificationImages: m.accuracy.images,
    validationImages: m.evaluation?.images ?? null,
    validationTop1: m.evaluation?.top1 ?? null,
    validationTop5: m.evaluation?.top5 ?? null,
  };
}

/**
 * Why a manifest read back for a Model row does not describe that row's model (null: it does).
 * Compared: the file's sha256 and what decides a prediction (input size, classes); a mismatch means
 * the stored manifest was replaced or edited after the export.
 */
export function manifestMismatch(record: ModelRecord, m: ModelManifest): string | null {
  const expected = newModelFromManifest(m, { id: record.id, onnxKey: record.onnxKey, manifestKey: record.manifestKey });
  const differs = (['sha256', 'inputSize', 'classes'] as const).filter((k) => JSON.stringify(expected[k]) !== JSON.stringify(record[k]));
  return differs.length ? `its manifest does not describe its recorded model (${differs.join(', ')} differ)` : null;
}

/** Include the job's model when reading jobs (the job view shows it). */
export const JOB_WITH_MODEL = { model: true } as const;

export function rowToRecord(row: ModelRow): ModelRecord {
  let classes: string[] = [];
  try {
    const parsed: unknown = JSON.parse(row.classes);
    if (Array.isArray(parsed)) classes = parsed.map(String);
  } catch {
    classes = [];
  }
  return { ...row, classes };
}

/**
 * Records the job's model (a job has at most one: a re-export replaces it). Returns the store
 * prefix of the model it replaced, whose files the caller deletes once the transaction committed.
 */
export async function recordJobModel(tx: Tx, m: NewModel): Promise<{ replacedPrefix: string | null }> {
  const old = await tx.model.findUnique({ where: { jobId: m.jobId }, select: { onnxKey: true } });
  const data = { ...m, classes: JSON.stringify(m.classes) };
  if (old) await tx.model.delete({ where: { jobId: m.jobId } });
  await tx.model.create({ data });
  const oldPrefix = old ? old.onnxKey.slice(0, old.onnxKey.lastIndexOf('/')) : null;
  const newPrefix = m.onnxKey.slice(0, m.onnxKey.lastIndexOf('/'));
  return { replacedPrefix: oldPrefix && oldPrefix !== newPrefix ? oldPrefix : null };
}

/** A page of models, newest first: `take` of them, created before `after` when given. */
export async function listModels(prisma: Prisma, page: { take: number; after?: RowKey }): Promise<ModelRecord[]> {
  const rows = await prisma.model.findMany({ where: createdBefore(page.after), orderBy: NEWEST_FIRST, take: page.take });
  return rows.map(rowToRecord);
}

export async function getModel(prisma: Prisma, id: string): Promise<ModelRecord | null> {
  const row = await prisma.model.findUnique({ where: { id } });
  return row ? rowToRecord(row) : null;
}

/**
 * The models that may serve, best first: promoted ones (newest promotion first), then those whose
 * job may auto-serve (created by an admin key or with auth off), newest first. The registry falls
 * back along this list when the first cannot be loaded.
 */
export async function servingCandidates(prisma: Prisma | Tx, limit: number): Promise<ModelRecord[]> {
  const promoted = await prisma.model.findMany({ where: { promotedAt: { not: null } }, orderBy: { promotedAt: 'desc' }, take: limit });
  const auto =
    promoted.length >= limit
      ? []
      : await prisma.model.findMany({
          where: { promotedAt: null, job: { autoServe: true } },
          orderBy: NEWEST_FIRST,
          take: limit - promoted.length,
        });
  return [...promoted, ...auto].map(rowToRecord);
}

/** The model to serve: the first candidate. */
export async function servingModel(prisma: Prisma | Tx): Promise<ModelRecord | null> {
  return (await servingCandidates(prisma, 1))[0] ?? null;
}

/** Which of `sha256s` a model row has (in lists of 500: SQLite takes at most 999 parameters). */
export async function storedSha256s(prisma: Prisma, sha256s: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < sha256s.length; i += 500) {
    const rows = await prisma.model.findMany({ where: { sha256: { in: sha256s.slice(i, i + 500) } }, select: { sha256: true } });
    for (const r of rows) out.add(r.sha256);
  }
  return out;
}

/** Pins a model as the serving one; null when there is no such model. */
export async function promoteModel(prisma: Prisma, id: string): Promise<ModelRecord | null> {
  const { count } = await prisma.model.updateMany({ where: { id }, data: { promotedAt: new Date() } });
  return count ? getModel(prisma, id) : null;
}
