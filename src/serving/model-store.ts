// Where served models come from. The registry only needs this interface; the service's database
// (Prisma `Model` table, written by the worker after a verified export) is the real source, and a
// directory-backed store serves benchmarks and tests without a database.
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';

export interface ModelRecord {
  id: string;
  jobId: string;
  createdAt: Date;
  onnxPath: string;
  manifestPath: string;
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

export interface ModelStore {
  /** Newest first. */
  list(): Promise<ModelRecord[]>;
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
}

/** The rule shared by every store: newest promotion first, then the newest auto-serving models. */
export function rankCandidates(models: ModelRecord[], limit: number): ModelRecord[] {
  const promoted = models.filter((m) => m.promotedAt).sort((a, b) => b.promotedAt!.getTime() - a.promotedAt!.getTime());
  const auto = models
    .filter((m) => !m.promotedAt && m.autoServe !== false)
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
  return [...promoted, ...auto].slice(0, limit);
}

// ---- Prisma --------------------------------------------------------------------------------------

/** The columns of the Prisma `Model` row: a record with classes as JSON text. */
export type ModelRow = Omit<ModelRecord, 'classes'> & { classes: string };

/** The slice of a Prisma client this store uses (structural, so it works with either schema). */
export interface PrismaModelClient {
  model: {
    findMany(args: { orderBy: Record<string, 'asc' | 'desc'> | Array<Record<string, 'asc' | 'desc'>>; take?: number; where?: object }): Promise<ModelRow[]>;
    findUnique(args: { where: { id: string } }): Promise<ModelRow | null>;
    findFirst(args: { where?: object; orderBy: Record<string, 'asc' | 'desc'> | Array<Record<string, 'asc' | 'desc'>> }): Promise<ModelRow | null>;
    update(args: { where: { id: string }; data: { promotedAt: Date } }): Promise<ModelRow>;
  };
}

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

export class PrismaModelStore implements ModelStore {
  constructor(private readonly prisma: PrismaModelClient) {}

  async list(): Promise<ModelRecord[]> {
    return (await this.prisma.model.findMany({ orderBy: { createdAt: 'desc' } })).map(rowToRecord);
  }

  async get(id: string): Promise<ModelRecord | null> {
    const row = await this.prisma.model.findUnique({ where: { id } });
    return row ? rowToRecord(row) : null;
  }

  async serving(): Promise<ModelRecord | null> {
    return (await this.candidates(1))[0] ?? null;
  }

  async candidates(limit: number): Promise<ModelRecord[]> {
    const promoted = await this.prisma.model.findMany({ where: { promotedAt: { not: null } }, orderBy: { promotedAt: 'desc' }, take: limit });
    const auto =
      promoted.length >= limit
        ? []
        : await this.prisma.model.findMany({
            where: { promotedAt: null, job: { autoServe: true } },
            orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
            take: limit - promoted.length,
          });
    return [...promoted, ...auto].map(rowToRecord);
  }

  async promote(id: string): Promise<ModelRecord | null> {
    const row = await this.prisma.model.findUnique({ where: { id } });
    if (!row) return null;
    return rowToRecord(await this.prisma.model.update({ where: { id }, data: { promotedAt: new Date() } }));
  }
}

// ---- in memory / directory -----------------------------------------------------------------------

/** Models held in memory (tests, benchmarks); `add` is what a worker's export would record. */
export class MemoryModelStore implements ModelStore {
  private readonly models = new Map<string, ModelRecord>();

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
 * Builds a record from an export directory (model.onnx + manifest.json), e.g. for `qatserve
 * predict` or a benchmark serving a model that is not in the database.
 */
export async function recordFromExportDir(dir: string, id = path.basename(dir)): Promise<ModelRecord> {
  const manifestPath = path.join(dir, 'manifest.json');
  const m = JSON.parse(await readFile(manifestPath, 'utf8')) as {
    jobId: string; createdAt: string; file: string; sha256: string; sizeBytes: number; float32SizeBytes: number;
    classes: string[]; input: { size: number }; accuracy?: { floatTop1: number; int8Top1: number; agreement: number };
  };
  return {
    id,
    jobId: m.jobId,
    createdAt: new Date(m.createdAt),
    onnxPath: path.join(dir, m.file),
    manifestPath,
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

/** Every export directory under `root` (each holding a manifest.json). */
export async function scanExportDirs(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
  const dirs: string[] = [];
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const files = await readdir(path.join(root, e.name)).catch(() => [] as string[]);
    if (files.includes('manifest.json')) dirs.push(path.join(root, e.name));
  }
  return dirs;
}
