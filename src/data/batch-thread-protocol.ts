// Messages between the training thread (batch-thread.ts) and the batch thread
// (batch-thread-worker.ts). Batch pixels travel as transferred ArrayBuffers: the batch thread
// sends a filled buffer, the training thread sends it back once the step has copied it into a
// tensor, and no byte is copied or allocated per step.
import type { DataWarning } from './errors.js';
import { DatasetError, type DatasetErrorCode } from './errors.js';
import type { SplitSource } from './split-source.js';
import type { Augmentation } from './augment.js';
import type { ImagePlace } from './source-rows.js';

export interface ThreadInput {
  source: SplitSource;
  /** SharedByteBudget.shared of the data set: both threads cache within one allowance. */
  budget: SharedArrayBuffer;
  batchSize: number;
  seed: number;
  augment: boolean;
  shuffle: boolean;
  dropLast: boolean;
  /** Rendered float32 batches, or each row's stored image and augmentation (Split.sources) for the training threads to render. */
  deliver: 'pixels' | 'sources';
  /** Batch buffers in the ring: the one being trained on plus those rendered ahead. */
  slots: number;
}

/** `gen` numbers the epoch requests; anything tagged with an older one is stale and dropped. */
export type ToBatchThread =
  { type: 'epoch'; gen: number; epoch: number; start: number } | { type: 'stop'; gen: number } | { type: 'release'; buffer: ArrayBuffer };

export interface SerializedError {
  name: string;
  message: string;
  code?: string;
}

export type FromBatchThread =
  | { type: 'ready'; length: number }
  /** `buffer`: the float32 pixels, or with `rows` the packed source images (SourceRows.bytes). */
  | { type: 'batch'; gen: number; step: number; n: number; buffer: ArrayBuffer; y: Int32Array; rows?: { images: ImagePlace[]; augs: Augmentation[] } }
  | { type: 'done'; gen: number }
  | { type: 'error'; gen: number; error: SerializedError }
  /** `skipped`: images newly counted as unreadable with this warning (adds to Dataset.stats). */
  | { type: 'warning'; warning: DataWarning; skipped: number };

export function serializeError(err: unknown): SerializedError {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  return { name: e.name, message: e.message, ...(typeof code === 'string' ? { code } : {}) };
}

/**
 * The error the synchronous pipeline would have thrown: a DatasetError keeps its class and code,
 * so a job fails with the same code and message whichever thread rendered its data.
 */
export function deserializeError(s: SerializedError): Error {
  if (s.name === 'DatasetError' && s.code) return new DatasetError(s.code as DatasetErrorCode, s.message);
  const e = s.name === 'RangeError' ? new RangeError(s.message) : s.name === 'TypeError' ? new TypeError(s.message) : new Error(s.message);
  if (e.name !== s.name) e.name = s.name;
  if (s.code) Object.assign(e, { code: s.code });
  return e;
}
