// The one module that writes and reads Model rows. A Model row records an exported int8 model:
// where its files are in the artifact store (keys, never paths), their size and sha256, and what
// the export measured. The worker writes it (src/jobs/job-lifecycle.ts, inside the transaction
// that marks the job succeeded); the API reads and promotes it (src/serving/model-store.ts).
import type { Prisma, Tx } from './database.js';

export interface ModelRecord {
  id: string;
  jobId: string;
  createdAt: Date;
  /** Artifact store key of model.onnx. */
  onnxKey: string;
  /** Artifact store key of manifest.json. */
  manifestKey: string;
  sizeBytes: number;
  float32SizeBytes: number;
  sha256: string;
  inputSize: number;
  classes: string[];
  floatTop1: number | null;
  int8Top1: number | null;
  agreement: number | null;
  promotedAt: Date | null;
  /**
   * Whether the model may serve without a promotion: its job was created by an admin key or with
   * auth off (absent: true). A `train` key's models serve only once an admin promotes them.
   */
  autoServe?: boolean;
}

/** What the worker records after a verified export. */
export type NewModel = Omit<ModelRecord, 'createdAt' | 'promotedAt' | 'autoServe'>;

/** The row as both providers return it: classes as JSON text. */
export type ModelRow = Omit<ModelRecord, 'classes'> & { classes: string };

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

/** Newest first. */
export async function listModels(prisma: Prisma): Promise<ModelRecord[]> {
  return (await prisma.model.findMany({ orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] })).map(rowToRecord);
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
export async function servingCandidates(prisma: Prisma, limit: number): Promise<ModelRecord[]> {
  const promoted = await prisma.model.findMany({ where: { promotedAt: { not: null } }, orderBy: { promotedAt: 'desc' }, take: limit });
  const auto =
    promoted.length >= limit
      ? []
      : await prisma.model.findMany({
          where: { promotedAt: null, job: { autoServe: true } },
          orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
          take: limit - promoted.length,
        });
  return [...promoted, ...auto].map(rowToRecord);
}

/** The model to serve: the first candidate. */
export async function servingModel(prisma: Prisma): Promise<ModelRecord | null> {
  return (await servingCandidates(prisma, 1))[0] ?? null;
}

/** Pins a model as the serving one; null when there is no such model. */
export async function promoteModel(prisma: Prisma, id: string): Promise<ModelRecord | null> {
  const { count } = await prisma.model.updateMany({ where: { id }, data: { promotedAt: new Date() } });
  return count ? getModel(prisma, id) : null;
}
