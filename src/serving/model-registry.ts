// Which model serves, and its lifecycle in the predictor pool. Model files come from the store
// (ModelStore.modelFile: the artifact store through a local sha256-checked cache). The registry
// polls the ModelStore (newest promoted model, else the newest auto-serving model) and swaps when
// that changes:
//   load and check the new model in every worker -> point new requests at it -> unload the old one
//   as soon as its in-flight requests have finished.
// So a swap never fails a request that already holds the old model, and both copies live only for
// the duration of the swap. A model whose file is missing, corrupt or does not answer never
// serves: the registry keeps (or, at start-up, falls back to) the next good candidate, says so in
// `readiness()` and the logs, and tries the broken one again after FAILED_RETRY_MS. Requests
// naming another model (`?model=`) load it on demand; at most `maxExtraModels` such models stay
// loaded (least recently used goes first, once idle).
import fs from 'node:fs/promises';
import type { ModelManifest } from '../export/manifest.js';
import { needsUint8Storage, toUint8WeightStorage } from '../export/weight-storage.js';
import { ModelLoadsBusyError, ModelNotFoundError, ModelUnavailableError, NoModelError, NoModelLoadsError } from './errors.js';
import type { ModelRecord, ModelStore } from './model-store.js';
import type { PredictorPool } from './predictor-pool.js';
import { silentLogger, type Logger } from '../logger.js';

export interface LoadedModel {
  record: ModelRecord;
  manifest: ModelManifest;
}

export interface ModelLease {
  model: LoadedModel;
  /** Call exactly once when the request no longer needs the model. */
  release(): void;
}

export interface ModelRegistryOptions {
  /** How often to ask the store for the serving model, in ms (0: only on refresh()). */
  pollMs?: number;
  maxExtraModels?: number;
  /** Models loaded on demand (`?model=`) per minute at most, one at a time; 0: neither limit (default 6). */
  maxLoadsPerMinute?: number;
  log?: Logger;
  /** Whether int8-stored 8-bit weights saturate on this CPU (default: read from its flags). */
  u8s8Saturates?: boolean;
}

interface Entry {
  model: LoadedModel;
  inFlight: number;
  retiring: boolean;
  lastUsed: number;
}

const silent: Logger = silentLogger;

/** A model that failed to load is tried again after this long (its file may be restored). */
export const FAILED_RETRY_MS = 60_000;
/**
 * Every this many refreshes (20 s at the default poll), and at the refresh after a deletion here,
 * the local copies of deleted models go (ModelStore.dropDeletedCopies).
 */
export const CACHE_SWEEP_EVERY = 10;
/** How far down the candidate list a fallback looks. */
const MAX_CANDIDATES = 10;

export interface RegistryReadiness {
  /** ok: serving the model it should · none: no model yet · fallback: an older one serves · failing: none serves. */
  state: 'ok' | 'none' | 'fallback' | 'failing';
  servingId: string | null;
  /** The model that should serve, when it is not the one serving. */
  wantedId?: string;
  reason?: string;
}

/** On-demand loads a minute when not configured (PREDICT_MODEL_LOADS_PER_MINUTE's default). */
export const DEFAULT_LOADS_PER_MINUTE = 6;

export class ModelRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  private servingId: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private closed = false;
  private readonly log: Logger;
  private readonly maxExtra: number;
  /** When each on-demand load of the last minute began (oldest first). */
  private readonly recentLoads: number[] = [];
  /** The model a request is loading on demand, if any (requests for it join that load). */
  private loadingOnDemand: string | null = null;
  /** Models that failed to load: when, and why (cleared when one loads). */
  private readonly failed = new Map<string, { at: number; reason: string }>();
  private state: RegistryReadiness = { state: 'none', servingId: null };
  /** Refreshes since the last sweep of the model cache (the first refresh sweeps: models deleted while this process was down). */
  private refreshesSinceSweep = CACHE_SWEEP_EVERY - 1;
  private sweeping: Promise<void> | null = null;

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

  currentId(): string | null {
    return this.servingId;
  }

  /** The model answering requests that name none, and its job; null while none serves. */
  servingModel(): { id: string; jobId: string } | null {
    const record = this.servingId ? this.entries.get(this.servingId)?.model.record : undefined;
    return record ? { id: record.id, jobId: record.jobId } : null;
  }

  /** Loaded model ids (serving, extras, and retiring ones still finishing requests). */
  loadedIds(): string[] {
    return [...this.entries.keys()];
  }

  /** A model deleted from the store: it stops answering `?model=` (it was not the serving one). */
  forget(id: string): void {
    this.failed.delete(id);
    this.retire(id);
    this.refreshesSinceSweep = CACHE_SWEEP_EVERY - 1;
  }

  /** Re-reads the serving model from the store and swaps to it if it changed. Serialized. */
  refresh(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
        this.sweepCache();
      });
    }
    return this.refreshing;
  }

  /** Now and then, in the background (a request waiting for a refresh does not wait for it): see CACHE_SWEEP_EVERY. */
  private sweepCache(): void {
    if (this.closed || this.sweeping || !this.store.dropDeletedCopies || ++this.refreshesSinceSweep < CACHE_SWEEP_EVERY) return;
    this.refreshesSinceSweep = 0;
    this.sweeping = this.store
      .dropDeletedCopies()
      .then((removed) => {
        if (removed) this.log.info({ removed }, 'model registry: removed local copies of deleted models');
      })
      .catch((err) => this.log.warn({ err }, 'model registry: could not remove local copies of deleted models; trying again later'))
      .finally(() => {
        this.sweeping = null;
      });
  }

  /** What serves and whether it is the model that should: for /readyz. */
  readiness(): RegistryReadiness {
    return this.state;
  }

  private async doRefresh(): Promise<void> {
    if (this.closed) return;
    const candidates = await this.store.candidates(MAX_CANDIDATES);
    // Loaded models whose job was deleted (on any replica) answer no more: one loaded for ?model=,
    // or a last good one this replica still serves because the wanted model does not load.
    for (const [id, e] of [...this.entries]) {
      if (e.retiring || candidates.some((c) => c.id === id) || (await this.store.get(id))) continue;
      if (id === this.servingId) {
        this.servingId = null;
        this.log.warn({ modelId: id }, 'model registry: the serving model is gone from the store');
      }
      this.forget(id);
    }
    const wanted = candidates[0];
    if (!wanted) {
      // A model that served is gone (the loop above let it go): no model exists that may serve.
      this.state = { state: 'none', servingId: null };
      return;
    }
    // The first candidate that loads serves; the ones before it are broken (or were recently).
    for (const c of candidates) {
      if (c.id === this.servingId) break; // already serving: keep it
      const failedAt = this.failed.get(c.id);
      if (failedAt && Date.now() - failedAt.at < FAILED_RETRY_MS) continue;
      try {
        const entry = await this.ensureLoaded(c);
        if (this.closed) return;
        this.failed.delete(c.id);
        const old = this.servingId;
        this.servingId = c.id;
        entry.retiring = false;
        this.log.info({ modelId: c.id, jobId: c.jobId, previous: old }, 'model registry: now serving');
        if (old && old !== c.id) this.retire(old);
        break;
      } catch (err) {
        const reason = (err as Error).message;
        if (!failedAt) this.log.error({ err, modelId: c.id, onnxKey: c.onnxKey }, `model registry: model ${c.id} cannot be loaded; trying the next good one`);
        this.failed.set(c.id, { at: Date.now(), reason });
      }
    }
    if (this.servingId === wanted.id) this.state = { state: 'ok', servingId: wanted.id };
    else {
      const reason = this.failed.get(wanted.id)?.reason ?? 'not loaded yet';
      const state = this.servingId ? 'fallback' : 'failing';
      if (this.state.state !== state || this.state.wantedId !== wanted.id || this.state.servingId !== this.servingId) {
        this.log.warn(
          { wanted: wanted.id, serving: this.servingId, reason },
          state === 'fallback'
            ? `model registry: serving ${this.servingId} (last good) instead of ${wanted.id}`
            : `model registry: nothing can serve; ${wanted.id} cannot be loaded`,
        );
      }
      this.state = { state, servingId: this.servingId, wantedId: wanted.id, reason };
    }
  }

  /**
   * Promotion that only commits a model that works: loads it in every worker, runs a blank image
   * through it (finite logits, one per class of its manifest), then `commit()` (which records the
   * promotion) and swaps to it. Throws ModelUnavailableError and commits nothing otherwise.
   */
  async promote<T>(record: ModelRecord, commit: () => Promise<T>): Promise<T> {
    this.failed.delete(record.id); // an explicit promotion tries again now
    const wasLoaded = this.entries.has(record.id);
    let entry: Entry;
    try {
      entry = await this.ensureLoaded(record);
      await this.smokeTest(entry.model);
    } catch (err) {
      this.failed.set(record.id, { at: Date.now(), reason: (err as Error).message });
      if (!wasLoaded && this.entries.has(record.id) && record.id !== this.servingId) this.retire(record.id);
      this.log.warn({ err, modelId: record.id, onnxKey: record.onnxKey }, 'model registry: promotion refused, the model does not load');
      throw err instanceof ModelUnavailableError ? err : new ModelUnavailableError(record.id, (err as Error).message);
    }
    entry.lastUsed = Date.now();
    const result = await commit();
    await this.refresh();
    if (this.servingId !== record.id) this.evictExtras(this.servingId ?? record.id);
    return result;
  }

  /** One blank image through the model: it must answer with a finite logit per class. */
  private async smokeTest(model: LoadedModel): Promise<void> {
    const size = model.manifest.input.size;
    const r = await this.pool.infer(model.record.id, { rgb: new Uint8Array(3 * size * size), normalization: model.manifest.preprocess.normalization }, size);
    const k = model.manifest.classes.length;
    if (r.logits.length !== k) throw new ModelUnavailableError(model.record.id, `it answers ${r.logits.length} scores for ${k} classes`);
    if (!r.logits.every(Number.isFinite)) throw new ModelUnavailableError(model.record.id, 'it answers non-finite scores');
  }

  private async ensureLoaded(record: ModelRecord): Promise<Entry> {
    const have = this.entries.get(record.id);
    if (have) return have;
    let p = this.loading.get(record.id);
    if (!p) {
      p = (async () => {
        // Both from the artifact store: the file is a local copy checked against the row's sha256.
        const manifest = await this.store.manifest(record);
        const file = await this.runnableFile(record, manifest, await this.store.modelFile(record));
        await this.pool.load(record.id, file).catch((err: Error) => {
          throw new ModelUnavailableError(record.id, `onnxruntime cannot load it (${err.message.split('\n')[0].slice(0, 200)})`);
        });
        const entry: Entry = { model: { record, manifest }, inFlight: 0, retiring: false, lastUsed: Date.now() };
        this.entries.set(record.id, entry);
        return entry;
      })().finally(() => this.loading.delete(record.id));
      this.loading.set(record.id, p);
    }
    return p;
  }

  /**
   * The model file as this CPU runs it exactly: its path, or the file rewritten to uint8 weight
   * storage where it holds int8-stored 8-bit weights and this CPU has no VNNI (exported on one that
   * has: src/export/weight-storage.ts).
   */
  private async runnableFile(record: ModelRecord, manifest: ModelManifest, file: string): Promise<string | Uint8Array> {
    if (!needsUint8Storage(manifest.quantization, this.opts.u8s8Saturates)) return file;
    let bytes: Uint8Array;
    try {
      bytes = toUint8WeightStorage(await fs.readFile(file));
    } catch (err) {
      throw new ModelUnavailableError(record.id, `its model file cannot be read as ONNX (${(err as Error).message.slice(0, 200)})`);
    }
    this.log.info({ modelId: record.id }, 'model registry: int8-stored 8-bit weights saturate on this CPU (no VNNI); serving them stored as uint8');
    return bytes;
  }

  /**
   * Nothing may serve. With no model at all, train one; with models that only wait for a promotion
   * (a train key's, or a job's whose key was revoked before it finished), "train one" would send
   * the user the wrong way.
   */
  private async noModel(): Promise<NoModelError> {
    const newest = (await this.store.list({ take: 1 }))[0];
    if (!newest) return new NoModelError();
    return new NoModelError(
      `no model serves yet: the stored models (the newest is ${newest.id}, of job ${newest.jobId}) serve only once an admin promotes one (POST /v1/models/:id/promote); models of a train key's jobs, and of jobs whose key was revoked before they finished, do not serve on their own`,
    );
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
      if (!this.servingId && this.state.state === 'failing' && this.state.reason) throw new NoModelLoadsError(this.state.reason);
      if (!this.servingId) throw await this.noModel();
      entry = this.entries.get(this.servingId);
      if (!entry) throw new NoModelError();
    } else {
      entry = this.entries.get(id);
      if (!entry || entry.retiring) {
        const record = entry?.model.record ?? (await this.store.get(id));
        if (!record) throw new ModelNotFoundError(id);
        const starts = !this.entries.has(id) && !this.loading.has(id);
        if (starts) this.admitLoad(id);
        try {
          entry = await this.ensureLoaded(record);
        } finally {
          if (starts) this.loadingOnDemand = null;
        }
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

  /**
   * A load on demand costs every predictor worker a new model session: one at a time and a few a
   * minute, else MODEL_LOADS_BUSY. Without that, 16 clients naming 78 models in turn made every
   * request a load, and another client's predictions went from 34 to 284 ms at the median
   * (twenty-ninth session).
   */
  private admitLoad(id: string): void {
    if (this.loadingOnDemand) throw new ModelLoadsBusyError(id, `model "${this.loadingOnDemand}" is being loaded on demand`, 1);
    const limit = this.opts.maxLoadsPerMinute ?? DEFAULT_LOADS_PER_MINUTE;
    if (limit <= 0) return;
    const now = Date.now();
    while (this.recentLoads.length && this.recentLoads[0] <= now - 60_000) this.recentLoads.shift();
    if (this.recentLoads.length >= limit) {
      const wait = Math.max(1, Math.ceil((this.recentLoads[0] + 60_000 - now) / 1000));
      throw new ModelLoadsBusyError(id, `${limit} models were loaded on demand in the last minute (PREDICT_MODEL_LOADS_PER_MINUTE)`, wait);
    }
    this.recentLoads.push(now);
    this.loadingOnDemand = id;
  }

  /** Keeps at most maxExtra non-serving models, retiring the least recently used ones. */
  private evictExtras(justUsed: string): void {
    const extras = [...this.entries.entries()]
      .filter(([mid, e]) => mid !== this.servingId && mid !== justUsed && !e.retiring)
      .sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    const over = extras.length + 1 - this.maxExtra;
    for (let i = 0; i < over && i < extras.length; i++) this.retire(extras[i][0]);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.refreshing?.catch(() => {});
    await this.sweeping; // before the database closes under it
  }
}
