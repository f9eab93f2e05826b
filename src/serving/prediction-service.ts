// One prediction: validate and decode the upload following the model's manifest, run it through
// the pool, softmax, top-k; or a batch of them, answered by one model. The routes stay thin and
// call this.
import { ServiceError } from '../jobs/job-errors.js';
import { PredictorPool, type PredictorPoolOptions } from './predictor-pool.js';
import { ModelRegistry, type ModelLease, type ModelRegistryOptions } from './model-registry.js';
import type { ModelStore } from './model-store.js';
import { OverloadedError } from './errors.js';
import { DecodeGate } from './decode-gate.js';
import { DEFAULT_MAX_PIXELS, decodeInspected, inspectImage, type DeclaredFormat } from './preprocess.js';

export interface Prediction {
  label: string;
  index: number;
  probability: number;
}

export interface Classified {
  predictions: Prediction[];
  timings: { decodeMs: number; inferMs: number; queueMs: number; batchSize: number };
}

export interface PredictResult extends Classified {
  model: { id: string; jobId: string };
}

/** What became of one image sent to be classified: answered, with its timings, or refused with a code. */
export type ImageOutcome = { timings: Classified['timings'] } | { code: string };

/** One image of a batch request, or why the request could not carry it (answered in its place). */
export type BatchImage = { image: Buffer; declared?: DeclaredFormat } | { error: { code: string; message: string } };

/** One image of a batch: its answer, or why it has none (the other images are answered). */
export type BatchItemResult = Classified | { error: { code: string; message: string } };

export interface PredictBatchResult {
  /** The model that answered every image; null when no image of the batch could be read. */
  model: { id: string; jobId: string } | null;
  results: BatchItemResult[];
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
  /** Most images one batch request carries (at most maxQueue: a batch takes a place per image). */
  maxImagesPerRequest?: number;
}

export const DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024;

/** What the header check learnt: its time, and the format the decode will read. */
interface Inspected {
  ms: number;
  format?: string;
}

export class ServingService {
  readonly pool: PredictorPool;
  readonly registry: ModelRegistry;
  readonly store: ModelStore;
  readonly maxImagePixels: number;
  readonly maxImageBytes: number;
  readonly maxQueue: number;
  readonly maxImagesPerRequest: number;
  private inFlight = 0;
  /** One AVIF decode at a time (decode-gate.ts); a batch's worth may wait for it. */
  private readonly avifDecodes: DecodeGate;
  private readonly imageListeners: Array<(outcome: ImageOutcome) => void> = [];

  constructor(opts: ServingOptions) {
    this.store = opts.store;
    this.pool = new PredictorPool(opts);
    this.registry = new ModelRegistry(opts.store, this.pool, opts);
    this.maxImagePixels = opts.maxImagePixels ?? DEFAULT_MAX_PIXELS;
    this.maxImageBytes = opts.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES;
    this.maxQueue = Math.max(1, opts.maxQueue ?? 64);
    this.maxImagesPerRequest = Math.max(1, Math.min(opts.maxImagesPerRequest ?? 16, this.maxQueue));
    this.avifDecodes = new DecodeGate('AVIF images', this.maxImagesPerRequest);
  }

  private overloaded(): OverloadedError {
    return new OverloadedError(`the server is answering ${this.maxQueue} predictions already; retry shortly`);
  }

  /** Predictions being decoded, waiting or running right now. */
  pending(): number {
    return this.inFlight;
  }

  /** Hears what became of every image a request sent (the Prometheus metrics count them). */
  onImage(listener: (outcome: ImageOutcome) => void): void {
    this.imageListeners.push(listener);
  }

  private heard(result: Classified | { error: { code: string } }): void {
    const outcome = 'error' in result ? { code: result.error.code } : { timings: result.timings };
    for (const listener of this.imageListeners) listener(outcome);
  }

  /** A request refused as a whole: each of its images was refused with its code (one the request could not carry, with its own). */
  private refused(err: unknown, images: readonly BatchImage[]): void {
    const code = err instanceof ServiceError ? err.code : 'INTERNAL_ERROR';
    for (const it of images) this.heard('error' in it ? it : { error: { code } });
  }

  start(): Promise<void> {
    return this.registry.start();
  }

  /**
   * `declared`: the format the client said it sent (content type), checked against what the bytes
   * decode as.
   */
  async predict(image: Buffer, opts: { modelId?: string; topK?: number; declared?: DeclaredFormat } = {}): Promise<PredictResult> {
    let result: PredictResult;
    try {
      if (this.inFlight >= this.maxQueue) throw this.overloaded();
      this.inFlight++;
      try {
        result = await this.predictOne(image, opts);
      } finally {
        this.inFlight--;
      }
    } catch (err) {
      this.refused(err, [{ image }]);
      throw err;
    }
    this.heard(result);
    return result;
  }

  private async predictOne(image: Buffer, opts: { modelId?: string; topK?: number; declared?: DeclaredFormat }): Promise<PredictResult> {
    // The upload is checked before a model is looked up: what is not an image is a 4xx whatever
    // the service holds, never a 503 NO_MODEL that invites the client to send it again.
    const inspected = await this.inspect(image, opts.declared);
    const lease = await this.registry.acquire(opts.modelId);
    try {
      return { model: modelOf(lease), ...(await this.classify(lease, image, inspected, opts.topK)) };
    } finally {
      lease.release();
    }
  }

  /**
   * Several images, all answered by one model (a promotion in between does not split a batch). A
   * batch takes a place in the predictor queue per image, all or none. An image that cannot be
   * read gets its error in its place; the others are answered.
   */
  async predictBatch(images: BatchImage[], opts: { modelId?: string; topK?: number } = {}): Promise<PredictBatchResult> {
    const places = images.filter((it) => 'image' in it).length;
    let result: PredictBatchResult;
    try {
      if (this.inFlight + places > this.maxQueue) throw this.overloaded();
      this.inFlight += places;
      try {
        result = await this.classifyBatch(images, opts);
      } finally {
        this.inFlight -= places;
      }
    } catch (err) {
      this.refused(err, images);
      throw err;
    }
    for (const r of result.results) this.heard(r);
    return result;
  }

  private async classifyBatch(images: BatchImage[], opts: { modelId?: string; topK?: number }): Promise<PredictBatchResult> {
    const inspected = await allSettled(
      images.map((it) => ('error' in it ? it : itemResult(async () => ({ image: it.image, ...(await this.inspect(it.image, it.declared)) })))),
    );
    const unreadable = inspected.filter((r) => 'error' in r);
    if (unreadable.length === images.length) return { model: null, results: unreadable };
    const lease = await this.registry.acquire(opts.modelId);
    try {
      const results = await allSettled(inspected.map((r) => ('error' in r ? r : itemResult(() => this.classify(lease, r.image, r, opts.topK)))));
      return { model: modelOf(lease), results };
    } finally {
      lease.release();
    }
  }

  /** Checks the image's header and declared format. */
  private async inspect(image: Buffer, declared?: DeclaredFormat): Promise<Inspected> {
    const t = performance.now();
    const { format } = await inspectImage(image, this.maxImagePixels, declared);
    return { ms: performance.now() - t, format };
  }

  private async classify(lease: ModelLease, image: Buffer, inspected: Inspected, k = 5): Promise<Classified> {
    const { record, manifest } = lease.model;
    // Time an AVIF waits for its turn to decode is queueing, not decoding.
    const t0 = performance.now();
    let decodeAt = t0;
    const decode = () => ((decodeAt = performance.now()), decodeInspected(image, manifest.input.size));
    const rgb = await (inspected.format === 'heif' ? this.avifDecodes.run(decode) : decode());
    const t1 = performance.now();
    const r = await this.pool.infer(record.id, { rgb, normalization: manifest.preprocess.normalization }, manifest.input.size);
    const t2 = performance.now();
    return {
      predictions: topK(softmax(r.logits), manifest.classes, k),
      timings: {
        decodeMs: round2(inspected.ms + t1 - decodeAt),
        inferMs: round2(r.inferMs),
        queueMs: round2(decodeAt - t0 + Math.max(0, t2 - t1 - r.inferMs)),
        batchSize: r.batchSize,
      },
    };
  }

  async close(): Promise<void> {
    await this.registry.close();
    await this.pool.close();
  }
}

const modelOf = (lease: ModelLease) => ({ id: lease.model.record.id, jobId: lease.model.record.jobId });

/** A batch item's value, or the service error that stops it alone (anything else fails the request). */
async function itemResult<T>(run: () => Promise<T>): Promise<T | { error: { code: string; message: string } }> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof ServiceError) return { error: { code: err.code, message: err.message } };
    throw err;
  }
}

/** Promise.all that lets every item finish (none runs on after its lease is released). */
async function allSettled<T>(items: (T | Promise<T>)[]): Promise<T[]> {
  const settled = await Promise.allSettled(items);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}
