// A pool of worker_threads, each holding onnxruntime sessions (one intra-op thread each), with
// micro-batching in front. `session.run` is a synchronous native call wrapped in a promise: run on
// the main thread it would stall the event loop for every inference, so health checks and job
// polls would wait behind predictions. Here the main thread only queues and routes.
//
// Micro-batching: while a run is in flight, requests for the same model that arrive within
// `batchWindowMs` go to one run, up to `maxBatch` images, spread over the idle workers (a request
// reaching an entirely idle pool runs at once). While every worker is busy, requests keep
// accumulating and the next free worker takes up to `maxBatch` of them at once, so batches grow
// with load on their own.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { PredictorError } from './errors.js';
import { normalizationLut } from '../data/normalization.js';
import { rgbToNchw, type Normalization } from './preprocess.js';

export interface PredictorPoolOptions {
  /** Worker threads (each runs one inference at a time on one core). */
  size?: number;
  /** How long the first request of a batch waits for company, in ms (0: no wait). */
  batchWindowMs?: number;
  maxBatch?: number;
}

export interface InferResult {
  logits: Float32Array;
  /** Wall time of the session.run that computed it, in ms. */
  inferMs: number;
  /** Images in that run. */
  batchSize: number;
}

// The worker is plain JavaScript evaluated from a string: it then runs the same way under tsx,
// vitest and the compiled dist build, with no loader for TypeScript in the thread.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const sessions = new Map();
// RGB batches are normalized here, off the event loop, with the table the pool sends
// (normalizationLut, 3 KB), into one float buffer reused across runs (the pool sends a worker
// one run at a time; a second concurrent one gets its own buffer).
let scratch = new Float32Array(0);
let scratchBusy = false;
// The same mapping as rgbToNchw in preprocess.ts (interleaved HWC bytes -> normalized NCHW planes),
// for n images back to back; a test checks both give the same logits.
function rgbToNchw(rgb, n, size, lut, out) {
  const plane = size * size;
  for (let b = 0; b < n; b++) {
    const base = b * 3 * plane;
    for (let p = 0, q = base; p < plane; p++, q += 3) {
      out[base + p] = lut[rgb[q]];
      out[base + plane + p] = lut[256 + rgb[q + 1]];
      out[base + 2 * plane + p] = lut[512 + rgb[q + 2]];
    }
  }
}
parentPort.on('message', async (msg) => {
  try {
    if (msg.type === 'load') {
      if (!sessions.has(msg.modelId)) {
        const s = await ort.InferenceSession.create(msg.source, {
          intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential',
          graphOptimizationLevel: 'all', logSeverityLevel: 3,
        });
        sessions.set(msg.modelId, s);
      }
      parentPort.postMessage({ id: msg.id, ok: true });
    } else if (msg.type === 'unload') {
      const s = sessions.get(msg.modelId);
      sessions.delete(msg.modelId);
      if (s) await s.release();
      parentPort.postMessage({ id: msg.id, ok: true });
    } else if (msg.type === 'shutdown') {
      for (const s of sessions.values()) await s.release();
      sessions.clear();
      parentPort.postMessage({ id: msg.id, ok: true });
      // Let the thread end on its own: terminating it inside native ORT code can abort the process.
      parentPort.close();
    } else if (msg.type === 'run') {
      const s = sessions.get(msg.modelId);
      if (!s) throw new Error('model ' + msg.modelId + ' is not loaded in this worker');
      const len = msg.n * 3 * msg.size * msg.size;
      let data = msg.input;
      let borrowed = false;
      if (msg.rgb) {
        if (!scratchBusy) {
          if (scratch.length < len) scratch = new Float32Array(len);
          data = scratch.subarray(0, len);
          scratchBusy = borrowed = true;
        } else data = new Float32Array(len);
        rgbToNchw(msg.rgb, msg.n, msg.size, msg.lut, data);
      }
      try {
        const input = new ort.Tensor('float32', data, [msg.n, 3, msg.size, msg.size]);
        const t0 = performance.now();
        const out = await s.run({ [s.inputNames[0]]: input });
        const ms = performance.now() - t0;
        const o = out[s.outputNames[0]].data;
        // ORT hands back a fresh buffer per run: send it as is when the view covers all of it.
        const logits = o.byteOffset === 0 && o.byteLength === o.buffer.byteLength ? o : Float32Array.from(o);
        parentPort.postMessage({ id: msg.id, ok: true, logits, ms }, [logits.buffer]);
      } finally {
        if (borrowed) scratchBusy = false;
      }
    }
  } catch (err) {
    parentPort.postMessage({ id: msg.id, ok: false, error: String(err && err.message || err) });
  }
});
`;

/** One image as decoded 8-bit RGB (HWC, size x size) with the model's normalization. */
export interface RgbInput {
  rgb: Uint8Array;
  normalization: Normalization;
}

/** A model input: normalized float NCHW [1, 3, size, size], or RGB bytes the worker normalizes. */
export type ModelInput = Float32Array | RgbInput;

interface Pending {
  input: ModelInput;
  resolve(r: InferResult): void;
  reject(e: Error): void;
}

interface ModelQueue {
  size: number;
  items: Pending[];
  /** True once the window has passed (or the batch is full): the items may be dispatched. */
  ready: boolean;
  timer: NodeJS.Timeout | null;
}

interface Reply {
  id: number;
  ok: boolean;
  error?: string;
  logits?: Float32Array;
  ms?: number;
}

class PoolWorker {
  readonly worker: Worker;
  busy = false;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(r: Reply): void; reject(e: Error): void }>();
  private readonly inFlight = new Set<Promise<Reply>>();

  constructor(ortPath: string, onExit: (w: PoolWorker, err: Error) => void) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ortPath } });
    this.worker.on('message', (r: Reply) => {
      const w = this.waiting.get(r.id);
      if (!w) return;
      this.waiting.delete(r.id);
      if (r.ok) w.resolve(r);
      else w.reject(new PredictorError(`inference worker: ${r.error}`));
    });
    const fail = (err: Error) => {
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
      onExit(this, err);
    };
    this.worker.on('error', (err) => fail(new PredictorError(`inference worker crashed: ${err.message}`)));
    this.worker.on('exit', (code) => fail(new PredictorError(`inference worker exited (code ${code})`)));
  }

  /**
   * Lets runs in flight finish (their callers get their answers), then releases the sessions and
   * lets the thread exit; terminates it if all that takes over 5 s.
   */
  async shutdown(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), 5000);
    });
    const drained = await Promise.race([Promise.allSettled(this.inFlight), timeout]);
    if (drained !== 'timeout') this.call({ type: 'shutdown' }).catch(() => {});
    const r = drained === 'timeout' ? drained : await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (r === 'timeout') await this.worker.terminate();
  }

  call(msg: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Reply> {
    const id = this.nextId++;
    const p = new Promise<Reply>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
    this.inFlight.add(p);
    const forget = () => this.inFlight.delete(p);
    p.then(forget, forget);
    return p;
  }
}

export class PredictorPool {
  readonly size: number;
  readonly batchWindowMs: number;
  readonly maxBatch: number;
  private readonly ortPath: string;
  private workers: PoolWorker[] = [];
  /**
   * modelId -> the ONNX file's bytes, for every model loaded in the workers, to reload a respawned
   * worker: its file may be gone by then (the API's model cache removes copies of loaded models).
   */
  private readonly models = new Map<string, Uint8Array>();
  private readonly queues = new Map<string, ModelQueue>();
  /** Models whose queue became ready, in arrival order (fairness between models). */
  private readonly readyOrder: string[] = [];
  private closed = false;

  constructor(opts: PredictorPoolOptions = {}) {
    this.size = Math.max(1, opts.size ?? 2);
    this.batchWindowMs = Math.max(0, opts.batchWindowMs ?? 2);
    this.maxBatch = Math.max(1, opts.maxBatch ?? 8);
    this.ortPath = createRequire(import.meta.url).resolve('onnxruntime-node');
    for (let i = 0; i < this.size; i++) this.workers.push(this.spawn());
  }

  private spawn(): PoolWorker {
    return new PoolWorker(this.ortPath, (dead, err) => this.onWorkerExit(dead, err));
  }

  private onWorkerExit(dead: PoolWorker, _err: Error): void {
    const i = this.workers.indexOf(dead);
    if (i < 0 || this.closed) return;
    // Replace the worker and give it every loaded model; requests it held were rejected.
    const fresh = this.spawn();
    this.workers[i] = fresh;
    fresh.busy = true;
    void Promise.all([...this.models].map(([modelId, source]) => fresh.call({ type: 'load', modelId, source })))
      .catch(() => {})
      .finally(() => {
        fresh.busy = false;
        this.dispatch();
      });
  }

  /** Loads a model (an .onnx path, read once here, or the file's bytes) into every worker (a session per worker). Idempotent. */
  async load(modelId: string, file: string | Uint8Array): Promise<void> {
    if (this.closed) throw new PredictorError('the predictor pool is closed', 'PREDICTOR_CLOSED');
    const source =
      typeof file === 'string'
        ? await readFile(file).catch((err: NodeJS.ErrnoException) => {
            // The code only: the message reaches clients, and a path is not theirs to see.
            throw new PredictorError(`cannot read the model file (${err.code ?? err.name})`);
          })
        : file;
    this.models.set(modelId, source);
    try {
      await Promise.all(this.workers.map((w) => w.call({ type: 'load', modelId, source })));
    } catch (err) {
      this.models.delete(modelId);
      await Promise.all(this.workers.map((w) => w.call({ type: 'unload', modelId }).catch(() => {})));
      throw err;
    }
  }

  /** Releases a model's sessions. Callers make sure nothing is in flight for it. */
  async unload(modelId: string): Promise<void> {
    this.models.delete(modelId);
    await Promise.all(this.workers.map((w) => w.call({ type: 'unload', modelId }).catch(() => {})));
  }

  isLoaded(modelId: string): boolean {
    return this.models.has(modelId);
  }

  loadedModels(): string[] {
    return [...this.models.keys()];
  }

  /** Logits for one image: normalized NCHW float [1, 3, size, size], or its RGB bytes. */
  infer(modelId: string, input: ModelInput, size: number): Promise<InferResult> {
    if (this.closed) return Promise.reject(new PredictorError('the predictor pool is closed', 'PREDICTOR_CLOSED'));
    if (!this.models.has(modelId)) return Promise.reject(new PredictorError(`model ${modelId} is not loaded`));
    const got = input instanceof Float32Array ? input.length : input.rgb.length;
    if (got !== 3 * size * size) return Promise.reject(new PredictorError(`the input has ${got} values, a ${size}x${size} RGB image has ${3 * size * size}`));
    return new Promise<InferResult>((resolve, reject) => {
      let q = this.queues.get(modelId);
      if (!q) {
        q = { size, items: [], ready: false, timer: null };
        this.queues.set(modelId, q);
      }
      q.items.push({ input, resolve, reject });
      // With every worker idle there is no load to batch against: waiting would only add the
      // window to this request's latency. Under load (a run in flight) requests wait for company.
      const poolIdle = this.workers.every((w) => !w.busy);
      if (q.items.length >= this.maxBatch || this.batchWindowMs === 0 || poolIdle) this.markReady(modelId, q);
      else if (!q.timer && !q.ready) q.timer = setTimeout(() => this.markReady(modelId, q), this.batchWindowMs);
      this.dispatch();
    });
  }

  private markReady(modelId: string, q: ModelQueue): void {
    if (q.timer) clearTimeout(q.timer);
    q.timer = null;
    if (!q.ready) {
      q.ready = true;
      this.readyOrder.push(modelId);
    }
    this.dispatch();
  }

  private dispatch(): void {
    while (this.readyOrder.length > 0) {
      const idle = this.workers.filter((w) => !w.busy);
      const worker = idle[0];
      if (!worker) return;
      const modelId = this.readyOrder.shift()!;
      const q = this.queues.get(modelId);
      if (!q || q.items.length === 0) continue;
      // Spread what is waiting over the idle workers: on CPU a batch of n costs about n single
      // runs, so two requests on two idle workers finish sooner than one batch of two on one.
      const take = Math.min(this.maxBatch, Math.ceil(q.items.length / idle.length));
      const batch = q.items.splice(0, take);
      if (q.items.length > 0)
        this.readyOrder.push(modelId); // the rest go next, no new window
      else {
        q.ready = false;
        this.queues.delete(modelId);
      }
      void this.run(worker, modelId, q.size, batch);
    }
  }

  private async run(worker: PoolWorker, modelId: string, size: number, batch: Pending[]): Promise<void> {
    worker.busy = true;
    try {
      const r = await worker.call(...batchMessage(modelId, size, batch));
      const logits = r.logits!;
      const k = logits.length / batch.length;
      batch.forEach((p, i) => p.resolve({ logits: logits.subarray(i * k, (i + 1) * k), inferMs: r.ms!, batchSize: batch.length }));
    } catch (err) {
      for (const p of batch) p.reject(err as Error);
    } finally {
      worker.busy = false;
      this.dispatch();
    }
  }

  /** Rejects queued requests, lets runs in flight answer, then stops the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const q of this.queues.values()) {
      if (q.timer) clearTimeout(q.timer);
      for (const p of q.items) p.reject(new PredictorError('the predictor pool is closing', 'PREDICTOR_CLOSED'));
    }
    this.queues.clear();
    this.models.clear();
    await Promise.all(this.workers.map((w) => w.shutdown()));
    this.workers = [];
  }
}

function sameNormalization(a: Normalization, b: Normalization): boolean {
  return a === b || (a.mean.every((v, i) => v === b.mean[i]) && a.std.every((v, i) => v === b.std[i]));
}

/**
 * The run message for a batch and the buffers it transfers (not copies) to the worker. RGB images
 * sharing one normalization (the usual case: one model, one manifest) travel as bytes and are
 * normalized in the worker; anything else is normalized here.
 */
function batchMessage(modelId: string, size: number, batch: Pending[]): [Record<string, unknown>, ArrayBuffer[]] {
  const per = 3 * size * size;
  const first = batch[0].input;
  if (
    !(first instanceof Float32Array) &&
    batch.every((p) => !(p.input instanceof Float32Array) && sameNormalization(p.input.normalization, first.normalization))
  ) {
    const rgb = new Uint8Array(batch.length * per);
    batch.forEach((p, i) => rgb.set((p.input as RgbInput).rgb, i * per));
    return [{ type: 'run', modelId, rgb, lut: normalizationLut(first.normalization), n: batch.length, size }, [rgb.buffer]];
  }
  const input = new Float32Array(batch.length * per);
  batch.forEach((p, i) => {
    if (p.input instanceof Float32Array) input.set(p.input, i * per);
    else rgbToNchw(p.input.rgb, size, p.input.normalization, input, i * per);
  });
  return [{ type: 'run', modelId, input, n: batch.length, size }, [input.buffer]];
}
