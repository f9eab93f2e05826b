// One prediction: validate and decode the upload following the model's manifest, run it through
// the pool, softmax, top-k. The routes stay thin and call this.
import { PredictorPool, type PredictorPoolOptions } from './predictor-pool.js';
import { ModelRegistry, type ModelRegistryOptions } from './model-registry.js';
import type { ModelStore } from './model-store.js';
import { OverloadedError } from './errors.js';
import { DEFAULT_MAX_PIXELS, decodeInspected, inspectImage, type DeclaredFormat } from './preprocess.js';

export interface Prediction {
  label: string;
  index: number;
  probability: number;
}

export interface PredictResult {
  model: { id: string; jobId: string };
  predictions: Prediction[];
  timings: { decodeMs: number; inferMs: number; queueMs: number; batchSize: number };
}

/** Numerically stable softmax of one row of logits. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** The k most probable classes, most probable first (ties: lower index first). */
export function topK(probs: ArrayLike<number>, labels: string[], k: number): Prediction[] {
  const n = probs.length;
  const kk = Math.max(0, Math.min(k, n));
  let idx: number[];
  if (kk > 64) {
    idx = Array.from({ length: n }, (_, i) => i);
    idx.sort((a, b) => probs[b] - probs[a] || a - b);
    idx.length = kk;
  } else {
    // Insertion into a sorted list of the best kk: one pass, no sort of every class per request.
    idx = [];
    for (let i = 0; i < n && kk > 0; i++) {
      const p = probs[i];
      if (idx.length === kk) {
        // An equal probability never displaces an earlier index.
        if (!(p > probs[idx[kk - 1]])) continue;
        idx.pop();
      }
      let j = idx.length;
      idx.push(i);
      while (j > 0 && probs[idx[j - 1]] < p) {
        idx[j] = idx[j - 1]!;
        j--;
      }
      idx[j] = i;
    }
  }
  return idx.map((i) => ({ label: labels[i] ?? String(i), index: i, probability: probs[i] }));
}

export interface ServingOptions extends PredictorPoolOptions, ModelRegistryOptions {
  store: ModelStore;
  /** Largest accepted image in pixels (width x height), checked before decoding. */
  maxImagePixels?: number;
  /** Largest accepted upload in bytes (the routes answer 413 above it). */
  maxImageBytes?: number;
  /**
   * Predictions in flight at once, from decode to answer. Past it a request is refused at once
   * (503 + Retry-After) instead of waiting behind a queue that only grows.
   */
  maxQueue?: number;
}

export const DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024;

export class ServingService {
  readonly pool: PredictorPool;
  readonly registry: ModelRegistry;
  readonly store: ModelStore;
  readonly maxImagePixels: number;
  readonly maxImageBytes: number;
  readonly maxQueue: number;
  private inFlight = 0;

  constructor(opts: ServingOptions) {
    this.store = opts.store;
    this.pool = new PredictorPool(opts);
    this.registry = new ModelRegistry(opts.store, this.pool, opts);
    this.maxImagePixels = opts.maxImagePixels ?? DEFAULT_MAX_PIXELS;
    this.maxImageBytes = opts.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES;
    this.maxQueue = Math.max(1, opts.maxQueue ?? 64);
  }

  /** Predictions being decoded, waiting or running right now. */
  pending(): number {
    return this.inFlight;
  }

  start(): Promise<void> {
    return this.registry.start();
  }

  /**
   * `declared`: the format the client said it sent (content type), checked against what the bytes
   * decode as.
   */
  async predict(image: Buffer, opts: { modelId?: string; topK?: number; declared?: DeclaredFormat } = {}): Promise<PredictResult> {
    if (this.inFlight >= this.maxQueue) throw new OverloadedError(this.maxQueue);
    this.inFlight++;
    try {
      return await this.predictOne(image, opts);
    } finally {
      this.inFlight--;
    }
  }

  private async predictOne(image: Buffer, opts: { modelId?: string; topK?: number; declared?: DeclaredFormat }): Promise<PredictResult> {
    // The upload is checked before a model is looked up: what is not an image is a 4xx whatever
    // the service holds, never a 503 NO_MODEL that invites the client to send it again.
    const tInspect = performance.now();
    await inspectImage(image, this.maxImagePixels, opts.declared);
    const inspectMs = performance.now() - tInspect;
    const lease = await this.registry.acquire(opts.modelId);
    try {
      const { record, manifest } = lease.model;
      const t0 = performance.now() - inspectMs;
      const rgb = await decodeInspected(image, manifest.input.size);
      const t1 = performance.now();
      const r = await this.pool.infer(record.id, { rgb, normalization: manifest.preprocess.normalization }, manifest.input.size);
      const t2 = performance.now();
      const probs = softmax(r.logits);
      return {
        model: { id: record.id, jobId: record.jobId },
        predictions: topK(probs, manifest.classes, opts.topK ?? 5),
        timings: {
          decodeMs: round2(t1 - t0),
          inferMs: round2(r.inferMs),
          queueMs: round2(Math.max(0, t2 - t1 - r.inferMs)),
          batchSize: r.batchSize,
        },
      };
    } finally {
      lease.release();
    }
  }

  async close(): Promise<void> {
    await this.registry.close();
    await this.pool.close();
  }
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}
