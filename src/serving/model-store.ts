// Where served models come from: the records (the database's Model rows, through the one module
// that reads and writes them, src/db/model-rows.ts) and their files (the artifact store, through
// a local cache that verifies every file against the row's sha256: src/artifacts/model-cache.ts).
// The registry only needs this interface; an in-memory store serves benchmarks and tests without
// a database.
import path from 'node:path';
import { FsArtifactStore } from '../artifacts/fs-store.js';
import { ModelFileCache } from '../artifacts/model-cache.js';
import type { Prisma } from '../db/database.js';
import { getModel, listModels, promoteModel, servingModel, type ModelRecord } from '../db/model-rows.js';
import type { ModelManifest } from '../export/manifest.js';
import { ModelUnavailableError } from './errors.js';

export type { ModelRecord } from '../db/model-rows.js';

export interface ModelStore {
  /** Newest first. */
  list(): Promise<ModelRecord[]>;
  get(id: string): Promise<ModelRecord | null>;
  /** The model to serve: the most recently promoted one, else the newest. */
  serving(): Promise<ModelRecord | null>;
  /** Pins a model as the serving one (null when it does not exist). */
  promote(id: string): Promise<ModelRecord | null>;
  /** A local copy of the model's ONNX file whose sha256 matches the record (ModelUnavailableError otherwise). */
  modelFile(record: ModelRecord): Promise<string>;
  manifest(record: ModelRecord): Promise<ModelManifest>;
}

/** The rule shared by every store: newest promotion wins, else the newest model. */
export function pickServing(models: ModelRecord[]): ModelRecord | null {
  let promoted: ModelRecord | null = null;
  for (const m of models) if (m.promotedAt && (!promoted || m.promotedAt > promoted.promotedAt!)) promoted = m;
  if (promoted) return promoted;
  let newest: ModelRecord | null = null;
  for (const m of models) if (!newest || m.createdAt > newest.createdAt) newest = m;
  return newest;
}

/** A model's files out of the artifact store, by the keys and sha256 of its record. */
export class ModelFiles {
  constructor(readonly cache: ModelFileCache) {}

  async onnx(record: ModelRecord): Promise<string> {
    try {
      return await this.cache.file(record.onnxKey, record.sha256);
    } catch (err) {
      throw new ModelUnavailableError(record.id, `model file ${record.onnxKey} unavailable (${(err as Error).message})`);
    }
  }

  async manifest(record: ModelRecord): Promise<ModelManifest> {
    let manifest: ModelManifest;
    try {
      manifest = JSON.parse((await this.cache.readSmall(record.manifestKey)).toString('utf8')) as ModelManifest;
    } catch (err) {
      throw new ModelUnavailableError(record.id, `manifest ${record.manifestKey} unreadable (${(err as Error).message})`);
    }
    if (!Array.isArray(manifest.classes) || typeof manifest.input?.size !== 'number' || !manifest.preprocess?.normalization) {
      throw new ModelUnavailableError(record.id, `manifest ${record.manifestKey} is not a qatserve model manifest`);
    }
    return manifest;
  }
}

/** Model files kept as plain files under `root` (keys relative to it): tests, benchmarks, exports on disk. */
export function modelFilesIn(root: string): ModelFiles {
  return new ModelFiles(new ModelFileCache(new FsArtifactStore(root)));
}

// ---- the database --------------------------------------------------------------------------------

export class PrismaModelStore implements ModelStore {
  constructor(
    private readonly prisma: Prisma,
    private readonly files: ModelFiles,
  ) {}

  list(): Promise<ModelRecord[]> {
    return listModels(this.prisma);
  }

  get(id: string): Promise<ModelRecord | null> {
    return getModel(this.prisma, id);
  }

  serving(): Promise<ModelRecord | null> {
    return servingModel(this.prisma);
  }

  promote(id: string): Promise<ModelRecord | null> {
    return promoteModel(this.prisma, id);
  }

  modelFile(record: ModelRecord): Promise<string> {
    return this.files.onnx(record);
  }

  manifest(record: ModelRecord): Promise<ModelManifest> {
    return this.files.manifest(record);
  }
}

// ---- in memory / directory -----------------------------------------------------------------------

/** Models held in memory (tests, benchmarks); `add` is what a worker's export would record. */
export class MemoryModelStore implements ModelStore {
  private readonly models = new Map<string, ModelRecord>();

  constructor(private readonly files: ModelFiles) {}

  modelFile(record: ModelRecord): Promise<string> {
    return this.files.onnx(record);
  }

  manifest(record: ModelRecord): Promise<ModelManifest> {
    return this.files.manifest(record);
  }

  add(record: ModelRecord): void {
    this.models.set(record.id, { ...record });
  }

  remove(id: string): void {
    this.models.delete(id);
  }

  async list(): Promise<ModelRecord[]> {
    return [...this.models.values()].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  }

  async get(id: string): Promise<ModelRecord | null> {
    return this.models.get(id) ?? null;
  }

  async serving(): Promise<ModelRecord | null> {
    return pickServing([...this.models.values()]);
  }

  async promote(id: string): Promise<ModelRecord | null> {
    const m = this.models.get(id);
    if (!m) return null;
    m.promotedAt = new Date(Math.max(Date.now(), ...[...this.models.values()].map((x) => (x.promotedAt?.getTime() ?? 0) + 1)));
    return { ...m };
  }
}

/**
 * Builds a record from an export directory (model.onnx + manifest.json), e.g. for a benchmark
 * serving a model that is not in the database. Its keys are relative to the directory's parent:
 * serve it with `modelFilesIn(path.dirname(dir))`.
 */
export async function recordFromExportDir(dir: string, id = path.basename(dir)): Promise<ModelRecord> {
  const name = path.basename(dir);
  const files = modelFilesIn(path.dirname(dir));
  const m = await files.manifest({ id, manifestKey: `${name}/manifest.json` } as ModelRecord) as ModelManifest & {
    accuracy?: { floatTop1: number; int8Top1: number; agreement: number };
  };
  return {
    id,
    jobId: m.jobId,
    createdAt: new Date(m.createdAt),
    onnxKey: `${name}/${m.file}`,
    manifestKey: `${name}/manifest.json`,
    sizeBytes: m.sizeBytes,
    float32SizeBytes: m.float32SizeBytes,
    sha256: m.sha256,
    inputSize: m.input.size,
    classes: m.classes,
    floatTop1: m.accuracy?.floatTop1 ?? null,
    int8Top1: m.accuracy?.int8Top1 ?? null,
    agreement: m.accuracy?.agreement ?? null,
    promotedAt: null,
  };
}
