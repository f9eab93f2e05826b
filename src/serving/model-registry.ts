// Which model serves, and its lifecycle in the predictor pool. Model files come from the store
// (ModelStore.modelFile: the artifact store through a local sha256-checked cache). The registry polls the ModelStore
// (newest promoted model, else the newest model) and swaps when that changes:
//   load the new model in every worker -> point new requests at it -> unload the old one as soon as
//   its in-flight requests have finished.
// So a swap never fails a request that already holds the old model, and both copies live only for
// the duration of the swap. Requests naming another model (`?model=`) load it on demand; at most
// `maxExtraModels` such models stay loaded (least recently used goes first, once idle).
import type { ModelManifest } from '../export/manifest.js';
import { ModelNotFoundError, NoModelError } from './errors.js';
import type { ModelRecord, ModelStore } from './model-store.js';
import type { PredictorPool } from './predictor-pool.js';

export interface LoadedModel {
  record: ModelRecord;
  manifest: ModelManifest;
}

export interface ModelLease {
  model: LoadedModel;
  /** Call exactly once when the request no longer needs the model. */
  release(): void;
}

export interface RegistryLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface ModelRegistryOptions {
  /** How often to ask the store for the serving model, in ms (0: only on refresh()). */
  pollMs?: number;
  maxExtraModels?: number;
  log?: RegistryLogger;
}

interface Entry {
  model: LoadedModel;
  inFlight: number;
  retiring: boolean;
  lastUsed: number;
}

const silent: RegistryLogger = { info() {}, warn() {}, error() {} };

export class ModelRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  private servingId: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private closed = false;
  private readonly log: RegistryLogger;
  private readonly maxExtra: number;

  constructor(
    private readonly store: ModelStore,
    private readonly pool: PredictorPool,
    private readonly opts: ModelRegistryOptions = {},
  ) {
    this.log = opts.log ?? silent;
    this.maxExtra = Math.max(0, opts.maxExtraModels ?? 1);
  }

  /** First refresh, then polling. A failing refresh is logged; serving goes on with what it has. */
  async start(): Promise<void> {
    await this.refresh().catch((err) => this.log.error({ err }, 'model registry: first refresh failed'));
    const poll = this.opts.pollMs ?? 2000;
    if (poll > 0 && !this.closed) {
      this.timer = setInterval(() => {
        this.refresh().catch((err) => this.log.warn({ err }, 'model registry: refresh failed'));
      }, poll);
      this.timer.unref();
    }
  }

  /** The serving model, if any (no lease: for listings). */
  current(): LoadedModel | null {
    return this.servingId ? (this.entries.get(this.servingId)?.model ?? null) : null;
  }

  currentId(): string | null {
    return this.servingId;
  }

  /** Loaded model ids (serving, extras, and retiring ones still finishing requests). */
  loadedIds(): string[] {
    return [...this.entries.keys()];
  }

  /** Re-reads the serving model from the store and swaps to it if it changed. Serialized. */
  refresh(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    if (this.closed) return;
    const target = await this.store.serving();
    if (!target) {
      if (this.servingId) {
        const old = this.servingId;
        this.servingId = null;
        this.log.warn({ modelId: old }, 'model registry: the serving model is gone from the store');
        this.retire(old);
      }
      return;
    }
    if (target.id === this.servingId) return;
    const entry = await this.ensureLoaded(target);
    if (this.closed) return;
    const old = this.servingId;
    this.servingId = target.id;
    entry.retiring = false;
    this.log.info({ modelId: target.id, jobId: target.jobId, previous: old }, 'model registry: now serving');
    if (old && old !== target.id) this.retire(old);
  }

  private async ensureLoaded(record: ModelRecord): Promise<Entry> {
    const have = this.entries.get(record.id);
    if (have) return have;
    let p = this.loading.get(record.id);
    if (!p) {
      p = (async () => {
        // Both from the artifact store: the file is a local copy checked against the row's sha256.
        const manifest = await this.store.manifest(record);
        const file = await this.store.modelFile(record);
        await this.pool.load(record.id, file);
        const entry: Entry = { model: { record, manifest }, inFlight: 0, retiring: false, lastUsed: Date.now() };
        this.entries.set(record.id, entry);
        return entry;
      })().finally(() => this.loading.delete(record.id));
      this.loading.set(record.id, p);
    }
    return p;
  }

  /** Unloads a model now if idle, else when its last in-flight request releases it. */
  private retire(id: string): void {
    const e = this.entries.get(id);
    if (!e || id === this.servingId) return;
    e.retiring = true;
    if (e.inFlight === 0) this.unload(id);
  }

  private unload(id: string): void {
    this.entries.delete(id);
    this.pool.unload(id).catch((err) => this.log.warn({ err, modelId: id }, 'model registry: unload failed'));
    this.log.info({ modelId: id }, 'model registry: unloaded');
  }

  /** A lease on the serving model, or on model `id` (loaded on demand). */
  async acquire(id?: string): Promise<ModelLease> {
    if (this.closed) throw new NoModelError('the server is shutting down');
    let entry: Entry | undefined;
    if (!id || id === this.servingId) {
      if (!this.servingId) await this.refresh();
      if (!this.servingId) throw new NoModelError();
      entry = this.entries.get(this.servingId);
      if (!entry) throw new NoModelError();
    } else {
      entry = this.entries.get(id);
      if (!entry || entry.retiring) {
        const record = entry?.model.record ?? (await this.store.get(id));
        if (!record) throw new ModelNotFoundError(id);
        entry = await this.ensureLoaded(record);
        entry.retiring = false;
        this.evictExtras(id);
      }
    }
    const e = entry;
    e.inFlight++;
    e.lastUsed = Date.now();
    let released = false;
    return {
      model: e.model,
      release: () => {
        if (released) return;
        released = true;
        e.inFlight--;
        if (e.retiring && e.inFlight === 0 && this.entries.get(e.model.record.id) === e) this.unload(e.model.record.id);
      },
    };
  }

  /** Keeps at most maxExtra non-serving models, retiring the least recently used ones. */
  private evictExtras(justUsed: string): void {
    const extras = [...this.entries.entries()]
      .filter(([mid, e]) => mid !== this.servingId && mid !== justUsed && !e.retiring)
      .sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    const over = extras.length + 1 - this.maxExtra;
    for (let i = 0; i < over && i < extras.length; i++) this.retire(extras[i]![0]);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.refreshing?.catch(() => {});
  }
}
