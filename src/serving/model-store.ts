// Where served models come from: the records (the database's Model rows, through the one module
// that reads and writes them, src/db/model-rows.ts) and their files (the artifact store, through
// a local cache that verifies every file against the row's sha256: src/artifacts/model-cache.ts).
// The registry only needs this interface; testkit/memory-model-store.ts serves benchmarks and
// tests without a database.
import { FsArtifactStore } from '../artifacts/fs-store.js';
import { ModelFileCache } from '../artifacts/model-cache.js';
import type { Prisma } from '../db/database.js';
import type { RowKey } from '../db/keyset.js';
import { getModel, listModels, manifestMismatch, promoteModel, servingCandidates, servingModel, storedSha256s, type ModelRecord } from '../db/model-rows.js';
import { parseManifest, type ModelManifest } from '../export/manifest.js';
import { ModelManifestInvalidError, ModelUnavailableError } from './errors.js';

export type { ModelRecord } from '../db/model-rows.js';

export interface ModelStore {
  /** A page of models, newest first: `take` of them, created before `after` when given. */
  list(page: { take: number; after?: RowKey }): Promise<ModelRecord[]>;
  get(id: string): Promise<ModelRecord | null>;
  /** The model to serve: the most recently promoted one, else the newest that may serve on its own. */
  serving(): Promise<ModelRecord | null>;
  /**
   * The models that may serve, best first: promoted ones (newest promotion first), then the
   * auto-serving ones (newest first). The registry falls back along this list when the first
   * cannot be loaded.
   */
  candidates(limit: number): Promise<ModelRecord[]>;
  /** Pins a model as the serving one (null when it does not exist). */
  promote(id: string): Promise<ModelRecord | null>;
  /** A local copy of the model's ONNX file whose sha256 matches the record (ModelUnavailableError otherwise). */
  modelFile(record: ModelRecord): Promise<string>;
  /** The model's manifest, checked (ModelManifestInvalidError when it is not one, or not this model's). */
  manifest(record: ModelRecord): Promise<ModelManifest>;
  /** Removes local copies of model files whose models are gone (deleted on any replica); how many went. */
  dropDeletedCopies?(): Promise<number>;
}

/** The rule shared by every store: newest promotion first, then the newest auto-serving models. */
export function rankCandidates(models: ModelRecord[], limit: number): ModelRecord[] {
  const promoted = models.filter((m) => m.promotedAt).sort((a, b) => b.promotedAt!.getTime() - a.promotedAt!.getTime());
  const auto = models
    .filter((m) => !m.promotedAt && m.autoServe !== false)
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
  return [...promoted, ...auto].slice(0, limit);
}

/** An errno-style code or error class name: enough to tell the cause, never a path. */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown };
  return typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'error';
}

/** A model's files out of the artifact store, by the keys and sha256 of its record. */
export class ModelFiles {
  constructor(readonly cache: ModelFileCache) {}

  async onnx(record: ModelRecord): Promise<string> {
    try {
      return await this.cache.file(record.onnxKey, record.sha256);
    } catch (err) {
      // Messages name the model, never its files: they reach clients (the keys go to the log).
      throw new ModelUnavailableError(record.id, `its model file is missing, unreadable or does not match its sha256 (${errorCode(err)})`);
    }
  }

  /** The model's manifest, checked against the manifest schema and its record (ModelManifestInvalidError otherwise). */
  async manifest(record: ModelRecord): Promise<ModelManifest> {
    const manifest = await this.manifestAt(record.id, record.manifestKey);
    const mismatch = manifestMismatch(record, manifest);
    if (mismatch) throw new ModelManifestInvalidError(record.id, mismatch);
    return manifest;
  }

  /** The manifest stored at `key`, checked against the manifest schema only; `id` names the model in errors. */
  async manifestAt(id: string, key: string): Promise<ModelManifest> {
    let raw: unknown;
    try {
      raw = JSON.parse((await this.cache.readSmall(key)).toString('utf8'));
    } catch (err) {
      throw new ModelUnavailableError(id, `its manifest is missing or unreadable (${errorCode(err)})`);
    }
    const { manifest, problem } = parseManifest(raw);
    if (!manifest) throw new ModelManifestInvalidError(id, `its manifest is not a qatserve model manifest (${problem})`);
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

  list(page: { take: number; after?: RowKey }): Promise<ModelRecord[]> {
    return listModels(this.prisma, page);
  }

  get(id: string): Promise<ModelRecord | null> {
    return getModel(this.prisma, id);
  }

  serving(): Promise<ModelRecord | null> {
    return servingModel(this.prisma);
  }

  candidates(limit: number): Promise<ModelRecord[]> {
    return servingCandidates(this.prisma, limit);
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

  dropDeletedCopies(): Promise<number> {
    return this.files.cache.dropDeleted((sha256s) => storedSha256s(this.prisma, sha256s));
  }
}
