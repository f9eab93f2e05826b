// Test and benchmark support: a ModelStore held in memory, and records built from export
// directories, so the serving path runs without a database.
import path from 'node:path';
import { newModelFromManifest } from '../src/db/model-rows.js';
import { MANIFEST_FILE, type ModelManifest } from '../src/export/manifest.js';
import { modelFilesIn, rankCandidates, type ModelFiles, type ModelRecord, type ModelStore } from '../src/serving/model-store.js';

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
    return rankCandidates([...this.models.values()], 1)[0] ?? null;
  }

  async candidates(limit: number): Promise<ModelRecord[]> {
    return rankCandidates([...this.models.values()], limit);
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
  const manifest = await modelFilesIn(path.dirname(dir)).manifestAt(id, `${name}/${MANIFEST_FILE}`);
  const keys = { id, onnxKey: `${name}/${manifest.file}`, manifestKey: `${name}/${MANIFEST_FILE}` };
  return { ...newModelFromManifest(manifest, keys), createdAt: new Date(manifest.createdAt), promotedAt: null };
}
