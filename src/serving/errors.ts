// Errors of the serving layer. They extend the API's ServiceError, so the app's error handler
// answers them with their status and stable code in the one error shape.
import { ServiceError } from '../jobs/job-errors.js';

export type ImageErrorCode =
  | 'IMAGE_EMPTY' // no bytes
  | 'IMAGE_UNSUPPORTED_FORMAT' // not an image, or a format we do not decode (SVG, PDF, ...)
  | 'IMAGE_ANIMATED' // more than one frame: which one to classify is ambiguous
  | 'IMAGE_TOO_LARGE' // width x height over the pixel limit (decoding it would cost too much memory)
  | 'IMAGE_CORRUPT' // header parsed but the pixels do not decode (truncated, damaged)
  | 'IMAGE_SHAPE_UNSUPPORTED' // one side so many times the other that it cannot be scaled to the model's input
  | 'IMAGE_TYPE_MISMATCH'; // the declared content type is not the format the bytes decode as

const IMAGE_STATUS: Record<ImageErrorCode, number> = {
  IMAGE_EMPTY: 400,
  IMAGE_UNSUPPORTED_FORMAT: 415,
  IMAGE_ANIMATED: 400,
  IMAGE_TOO_LARGE: 400,
  IMAGE_CORRUPT: 400,
  IMAGE_SHAPE_UNSUPPORTED: 400,
  IMAGE_TYPE_MISMATCH: 415,
};

export class ImageError extends ServiceError {
  constructor(
    readonly imageCode: ImageErrorCode,
    message: string,
  ) {
    super(IMAGE_STATUS[imageCode], imageCode, message);
    this.name = 'ImageError';
  }
}

/** No model to serve yet (no succeeded job), or the requested one is gone. */
export class NoModelError extends ServiceError {
  constructor(message = 'no model is available yet: train one (POST /v1/jobs) and wait for it to succeed', code = 'NO_MODEL') {
    super(503, code, message);
    this.name = 'NoModelError';
  }
}

/**
 * Models exist but none loads on this replica (e.g. their files are in another machine's fs
 * artifact store): training another would not help, so this is not NO_MODEL.
 */
export class NoModelLoadsError extends NoModelError {
  constructor(reason: string) {
    super(`no model can serve: ${reason}`, 'MODEL_UNAVAILABLE');
    this.name = 'NoModelLoadsError';
  }
}

export class ModelNotFoundError extends ServiceError {
  constructor(id: string) {
    super(404, 'MODEL_NOT_FOUND', `no model with id "${id}"`);
    this.name = 'ModelNotFoundError';
  }
}

/** The model's files are missing or do not match the recorded sha256. */
export class ModelUnavailableError extends ServiceError {
  constructor(id: string, why: string, code = 'MODEL_UNAVAILABLE') {
    super(503, code, `model "${id}" cannot be loaded: ${why}`);
    this.name = 'ModelUnavailableError';
  }
}

/**
 * The model's stored manifest is not a qatserve manifest this version reads (edited, damaged, or
 * from another program), or describes another model than its row: the model does not serve.
 */
export class ModelManifestInvalidError extends ModelUnavailableError {
  constructor(id: string, why: string) {
    super(id, why, 'MODEL_MANIFEST_INVALID');
    this.name = 'ModelManifestInvalidError';
  }
}

/** The predictor pool is shutting down or a worker failed mid-request. */
export class PredictorError extends ServiceError {
  constructor(message: string, code = 'PREDICTOR_FAILED', status = 503) {
    super(status, code, message);
    this.name = 'PredictorError';
  }
}

/** A `?model=` that would need a load on demand while loads are rationed (model-registry.ts). */
export class ModelLoadsBusyError extends ServiceError {
  constructor(
    id: string,
    why: string,
    readonly retryAfterSeconds: number,
  ) {
    super(
      503,
      'MODEL_LOADS_BUSY',
      `model "${id}" is not loaded and cannot be now: ${why}; retry in ${retryAfterSeconds} s, or keep more models loaded (PREDICT_MAX_EXTRA_MODELS)`,
    );
    this.name = 'ModelLoadsBusyError';
  }
}

/** Too many predictions in flight: refused at once, with the seconds after which to retry. */
export class OverloadedError extends ServiceError {
  readonly retryAfterSeconds = 1;
  constructor(message: string) {
    super(503, 'PREDICT_OVERLOADED', message);
    this.name = 'OverloadedError';
  }
}
