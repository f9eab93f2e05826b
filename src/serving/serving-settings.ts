// Serving settings from the environment, parsed once with zod (defaults fit a 2-core machine).
import { z } from 'zod';

const int = (def: number, min: number) => z.coerce.number().int().min(min).default(def);

export const ServingSettingsSchema = z.object({
  /** Inference worker threads, one ORT intra-op thread each. */
  PREDICT_WORKERS: int(2, 1),
  /** Micro-batching window: how long a request waits for others to share its run. */
  PREDICT_BATCH_WINDOW_MS: z.coerce.number().min(0).max(1000).default(2),
  PREDICT_MAX_BATCH: int(8, 1),
  /** Largest upload in bytes (413 above it); base64 JSON bodies may be 4/3 of it. */
  PREDICT_MAX_IMAGE_BYTES: int(10 * 1024 * 1024, 1024),
  /** Largest image in pixels (width x height), checked from the header before decoding. */
  PREDICT_MAX_IMAGE_PIXELS: int(40_000_000, 1),
  /** How often the registry looks for a newer or promoted model. */
  MODEL_POLL_MS: int(2000, 0),
  /** Non-serving models (?model=) kept loaded at once. */
  PREDICT_MAX_EXTRA_MODELS: int(1, 0),
});

export interface ServingSettings {
  workers: number;
  batchWindowMs: number;
  maxBatch: number;
  maxImageBytes: number;
  maxImagePixels: number;
  pollMs: number;
  maxExtraModels: number;
}

export function servingSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): ServingSettings {
  const e = ServingSettingsSchema.parse(env);
  return {
    workers: e.PREDICT_WORKERS,
    batchWindowMs: e.PREDICT_BATCH_WINDOW_MS,
    maxBatch: e.PREDICT_MAX_BATCH,
    maxImageBytes: e.PREDICT_MAX_IMAGE_BYTES,
    maxImagePixels: e.PREDICT_MAX_IMAGE_PIXELS,
    pollMs: e.MODEL_POLL_MS,
    maxExtraModels: e.PREDICT_MAX_EXTRA_MODELS,
  };
}
