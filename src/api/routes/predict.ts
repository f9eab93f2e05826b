// POST /v1/predict (and POST /predict, the same route under the name users know): classify one
// image with the serving model (or ?model=<id>). `predict` scope.
// The image arrives as a multipart file field `image`, a raw image/jpeg|png|webp body, or JSON
// {"image": "<base64>"} (a data: URL prefix is accepted). Answers
// {model: {id, jobId}, predictions: [{label, index, probability}], timings: {decodeMs, inferMs, ...}}.
// Uploads over the size limit get 413; bad images 400/415 with an IMAGE_* code (src/serving/errors.ts),
// including a declared content type that is not what the bytes are (IMAGE_TYPE_MISMATCH); a full
// predictor queue 503 PREDICT_OVERLOADED with Retry-After.
// POST /v1/predict/batch classifies up to PREDICT_MAX_IMAGES_PER_REQUEST images with one model:
// a folder of thousands of photos should not cost thousands of requests against the rate limit.
// Multipart with a file field `image` per image, or JSON {"images": ["<base64>", ...]}; the images
// together within the upload limit. An image that cannot be read gets its error in its place in
// `results`, and the others are answered.
// GET /v1/predict/limits tells a client those limits, so it can pack a folder into requests the
// server takes (the dashboard does) instead of learning them from a 400 or 413.
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ServiceError, ValidationError } from '../../jobs/job-errors.js';
import { RAW_IMAGE_MEDIA_TYPES, type DeclaredFormat } from '../../serving/preprocess.js';
import { errorRef, jsonRef, jsonSchema, secured } from '../openapi-helpers.js';
import { parseRequest } from '../validate.js';

export const PredictQuery = z.object({
  /** How many classes to return, most probable first. */
  topK: z.coerce.number().int().min(1).max(1000).default(5),
  /** A model id other than the serving one. */
  model: z.string().min(1).max(100).optional(),
});

export const PredictJsonBody = z.object({ image: z.string().min(1) });

export const PredictBatchJsonBody = z.object({ images: z.array(z.string().min(1)).min(1) });

const Prediction = z.object({ label: z.string(), index: z.number().int(), probability: z.number() });

export const PredictResponse = z.object({
  model: z.object({ id: z.string(), jobId: z.string() }),
  predictions: z.array(Prediction),
  timings: z.object({
    decodeMs: z.number(),
    inferMs: z.number(),
    /** Time waiting for a worker / batch companions, and for an AVIF its turn to decode (one at a time). */
    queueMs: z.number(),
    /** Images in the ORT run that computed this answer (micro-batching). */
    batchSize: z.number().int(),
  }),
});

const BatchItemBase = z.object({
  /** The image's place in the request, from 0. */
  index: z.number().int(),
  /** The multipart part's file name, when it had one. */
  filename: z.string().optional(),
});

export const PredictBatchResponse = z.object({
  /** The model that answered every image; null when no image of the request could be read. */
  model: PredictResponse.shape.model.nullable(),
  /** One per image, in the request's order. */
  results: z.array(
    z.union([
      BatchItemBase.extend({ predictions: z.array(Prediction), timings: PredictResponse.shape.timings }),
      BatchItemBase.extend({ error: z.object({ code: z.string(), message: z.string() }) }),
    ]),
  ),
});

export const PredictLimits = z.object({
  /** Most images one POST /v1/predict/batch carries (PREDICT_MAX_IMAGES_PER_REQUEST). */
  maxImagesPerRequest: z.number().int(),
  /**
   * Most bytes of image one request carries: the image of /v1/predict, or the images of a batch
   * together (PREDICT_MAX_IMAGE_BYTES). Base64 JSON bodies may be 4/3 of it.
   */
  maxBytesPerRequest: z.number().int(),
  /**
   * Most pixels decoding one image may hold (PREDICT_MAX_IMAGE_PIXELS): width x height, except
   * that a baseline JPEG counts at the scale it decodes for the model, up to 1/8 per side.
   */
  maxImagePixels: z.number().int(),
  /** The content types a raw /v1/predict body may declare; multipart and JSON carry the same formats. */
  mediaTypes: z.array(z.string()),
});
export type PredictLimits = z.infer<typeof PredictLimits>;

/** The URLs this route answers on: the versioned one, and the name the product is known by. */
export const PREDICT_URLS = ['/v1/predict', '/predict'] as const;

const predictOperation = (operationId: string, summary: string) =>
  secured('predict', {
    operationId,
    summary,
    parameters: Object.entries(PredictQuery.shape).map(([name, field]) => ({ name, in: 'query', required: false, schema: jsonSchema(field, 'input') })),
    requestBody: {
      required: true,
      content: {
        'multipart/form-data': { schema: { type: 'object', properties: { image: { type: 'string', format: 'binary' } }, required: ['image'] } },
        ...Object.fromEntries(RAW_IMAGE_MEDIA_TYPES.map((type) => [type, { schema: { type: 'string', format: 'binary' } }])),
        'application/json': { schema: jsonSchema(PredictJsonBody, 'input') },
      },
    },
    responses: {
      '200': jsonRef('PredictResponse', 'Top-k classes'),
      '400': errorRef(
        'Bad image (IMAGE_EMPTY, IMAGE_CORRUPT, IMAGE_ANIMATED, IMAGE_TOO_LARGE: over PREDICT_MAX_IMAGE_PIXELS, IMAGE_SHAPE_UNSUPPORTED: one side over 149,000 times the other), no file field "image" (IMAGE_MISSING), a malformed multipart body (MULTIPART_INVALID), or an invalid query/body',
      ),
      '404': errorRef('?model= names no model (MODEL_NOT_FOUND)'),
      '413': errorRef('Upload over the size limit (BODY_TOO_LARGE)'),
      '415': errorRef("Not an accepted image format or content type, or the declared type is not the image's format (IMAGE_TYPE_MISMATCH)"),
      '503': {
        ...errorRef(
          'No model yet (NO_MODEL), models exist but none loads here (MODEL_UNAVAILABLE, naming why), the predictor queue is full (PREDICT_OVERLOADED, with Retry-After), or `?model=` names a model that is not loaded while loads on demand are rationed (MODEL_LOADS_BUSY, with Retry-After)',
        ),
        headers: { 'Retry-After': { description: 'Seconds to wait (PREDICT_OVERLOADED, MODEL_LOADS_BUSY)', schema: { type: 'integer' } } },
      },
    },
  });

const predictBatchOperation = secured('predict', {
  operationId: 'predictBatch',
  summary: 'Classify up to PREDICT_MAX_IMAGES_PER_REQUEST images with one model (the serving one, or ?model=<id>)',
  parameters: Object.entries(PredictQuery.shape).map(([name, field]) => ({ name, in: 'query', required: false, schema: jsonSchema(field, 'input') })),
  requestBody: {
    required: true,
    content: {
      'multipart/form-data': {
        schema: { type: 'object', properties: { image: { type: 'array', items: { type: 'string', format: 'binary' } } }, required: ['image'] },
        encoding: { image: { contentType: 'image/jpeg, image/png, image/webp' } },
      },
      'application/json': { schema: jsonSchema(PredictBatchJsonBody, 'input') },
    },
  },
  responses: {
    '200': jsonRef('PredictBatchResponse', "Each image's top-k classes, or its IMAGE_* error, in the request's order"),
    '400': errorRef(
      'More images than PREDICT_MAX_IMAGES_PER_REQUEST (TOO_MANY_IMAGES), none (IMAGE_MISSING), a malformed multipart body (MULTIPART_INVALID), or an invalid query/body',
    ),
    '404': errorRef('?model= names no model (MODEL_NOT_FOUND)'),
    '413': errorRef('An image, or the images together, over the upload limit (BODY_TOO_LARGE)'),
    '415': errorRef('Not multipart/form-data or application/json (UNSUPPORTED_MEDIA_TYPE)'),
    '503': {
      ...errorRef('As POST /v1/predict; PREDICT_OVERLOADED when the predictor queue has not a place for every image of the request'),
      headers: { 'Retry-After': { description: 'Seconds to wait (PREDICT_OVERLOADED, MODEL_LOADS_BUSY)', schema: { type: 'integer' } } },
    },
  },
});

/** This route's part of openapi.yaml (merged by src/api/openapi.ts). */
export const openapi = {
  paths: {
    '/v1/predict': { post: predictOperation('predict', 'Classify one image with the serving int8 model (or ?model=<id>)') },
    '/predict': { post: predictOperation('predictShort', 'The same route as POST /v1/predict (same body, answers, limits and auth)') },
    '/v1/predict/batch': { post: predictBatchOperation },
    '/v1/predict/limits': {
      get: secured('predict', {
        operationId: 'predictLimits',
        summary: "The upload limits of this server's predict routes: images per batch, bytes per request, pixels per image",
        responses: { '200': jsonRef('PredictLimits', 'The limits, as configured') },
      }),
    },
  },
  schemas: { PredictResponse: jsonSchema(PredictResponse), PredictBatchResponse: jsonSchema(PredictBatchResponse), PredictLimits: jsonSchema(PredictLimits) },
};

/**
 * Base64 in the standard or URL-safe alphabet, ASCII whitespace anywhere, at most two `=` at the
 * end. The padding is the only character outside the first class, so the match is linear: a regex
 * with overlapping whitespace classes, as once here, took time quadratic in the length on
 * "<spaces>!" (2 s for 40 KB). A loop over the characters, as next, cost 25 ms of the event loop
 * for a 3.2 MB body; this takes 1.7 ms (throwaway timing, twenty-eighth session).
 */
const BASE64 = /^[A-Za-z0-9+/_\t-\r -]*(?:=[\t-\r ]*){0,2}$/;

export function isBase64(s: string): boolean {
  return BASE64.test(s);
}

/** `data:image/png;base64,AAAA` -> {type: 'image/png', data: 'AAAA'}; anything else is all data. */
export function splitDataUrl(image: string): { type?: string; data: string } {
  if (!image.startsWith('data:')) return { data: image };
  const comma = image.indexOf(',');
  if (comma < 0) return { data: '' };
  const type = image.slice(5, comma).split(';')[0].trim().toLowerCase();
  return { type: type || undefined, data: image.slice(comma + 1) };
}

class PayloadTooLargeError extends ServiceError {
  constructor(limit: number, batch = false) {
    super(
      413,
      'BODY_TOO_LARGE',
      batch
        ? `the images are larger than the limit of ${limit} bytes together; send fewer per request`
        : `the image is larger than the limit of ${limit} bytes`,
    );
  }
}

class UnsupportedMediaTypeError extends ServiceError {
  constructor(type: string, batch = false) {
    super(
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      `content type "${type.slice(0, 100) || 'none'}" is not accepted; send ` +
        (batch
          ? 'multipart/form-data (a file field "image" per image) or application/json {"images": ["<base64>", ...]}'
          : 'multipart/form-data (field "image"), the raw image as image/jpeg, image/png, image/webp (or application/octet-stream), or application/json {"image": "<base64>"}'),
    );
  }
}

class TooManyImagesError extends ValidationError {
  constructor(max: number) {
    const message = `the request holds more than ${max} images; send at most ${max} per request (PREDICT_MAX_IMAGES_PER_REQUEST)`;
    super('TOO_MANY_IMAGES', message, [{ path: 'body', message }]);
  }
}

/** Non-file fields a multipart upload may carry beside "image" (form libraries add some). */
const MAX_MULTIPART_FIELDS = 10;

interface Upload {
  bytes: Buffer;
  /** The media type the client declared for the bytes (checked after decoding). */
  declared?: DeclaredFormat;
  filename?: string;
}

/** The multipart plugin's limit errors (413 "reach files limit", ...) in words a client can act on. */
function multipartLimitError(code: string | undefined, limit: number, maxFiles: number): ServiceError | null {
  const invalid = (message: string) => new ValidationError('MULTIPART_INVALID', message, [{ path: 'body', message }]);
  if (code === 'FST_REQ_FILE_TOO_LARGE') return new PayloadTooLargeError(limit);
  if (code === 'FST_FILES_LIMIT') {
    return maxFiles > 1
      ? new TooManyImagesError(maxFiles)
      : invalid('the multipart body holds more than one file: send one image per request, or several to POST /v1/predict/batch');
  }
  if (code === 'FST_FIELDS_LIMIT' || code === 'FST_PARTS_LIMIT') {
    return invalid(`the multipart body holds more than ${MAX_MULTIPART_FIELDS} fields besides the file${maxFiles > 1 ? 's' : ''} "image"`);
  }
  return null;
}

/**
 * The files of a multipart body (at most `maxFiles`, `limit` bytes together), every part read
 * (a file past `maxFiles` is refused, not ignored: which one a client meant is ambiguous).
 * Busboy's own errors (no boundary, a body that ends inside a part) are a malformed request, not
 * a fault of ours: 400.
 */
async function imagesFromMultipart(req: FastifyRequest, limit: number, maxFiles: number): Promise<Upload[]> {
  const images: Upload[] = [];
  let total = 0;
  try {
    for await (const part of req.parts({ limits: { fileSize: limit, files: maxFiles, fields: MAX_MULTIPART_FIELDS } })) {
      if (part.type !== 'file') continue;
      if (part.fieldname !== 'image') {
        part.file.resume();
        throw new ValidationError('IMAGE_MISSING', `the file field must be named "image", got "${part.fieldname.slice(0, 100)}"`, [
          { path: 'body.image', message: 'required' },
        ]);
      }
      const bytes = await part.toBuffer();
      total += bytes.length;
      if (total > limit) throw new PayloadTooLargeError(limit, maxFiles > 1);
      images.push({ bytes, declared: part.mimetype, filename: part.filename ? part.filename.slice(0, 255) : undefined });
    }
  } catch (err) {
    if (err instanceof ServiceError) throw err;
    const known = multipartLimitError((err as { code?: string }).code, limit, maxFiles);
    if (known) throw known;
    if (typeof (err as { statusCode?: unknown }).statusCode === 'number') throw err;
    const why = (err as Error).message.slice(0, 200);
    throw new ValidationError('MULTIPART_INVALID', `the multipart/form-data body cannot be read: ${why}`, [{ path: 'body', message: why }]);
  }
  if (!images.length) throw new ValidationError('IMAGE_MISSING', 'the multipart body has no file field "image"', [{ path: 'body.image', message: 'required' }]);
  return images;
}

/** A base64 image (a data: URL accepted) as bytes and the type its data: URL declared. */
function imageFromBase64(image: string, path: string): Upload {
  const { type: declared, data } = splitDataUrl(image);
  if (!isBase64(data)) throw new ValidationError('IMAGE_BASE64_INVALID', `${path} is not base64`, [{ path, message: 'not base64' }]);
  return { bytes: Buffer.from(data, 'base64'), declared };
}

const contentType = (req: FastifyRequest) => (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();

/** The upload's bytes, and the media type the client declared for them (checked after decoding). */
async function imageFromRequest(req: FastifyRequest, limit: number): Promise<Upload> {
  if (req.isMultipart()) return (await imagesFromMultipart(req, limit, 1))[0];
  const body = req.body;
  const type = contentType(req);
  if (Buffer.isBuffer(body)) {
    if (body.length > limit) throw new PayloadTooLargeError(limit);
    return { bytes: body, declared: type };
  }
  if (type !== 'application/json') throw new UnsupportedMediaTypeError(type);
  if (body === undefined || body === null) return { bytes: Buffer.alloc(0) };
  const image = imageFromBase64(parseRequest(PredictJsonBody, body, 'body').image, 'body.image');
  if (image.bytes.length > limit) throw new PayloadTooLargeError(limit);
  return image;
}

/**
 * A batch's images. In JSON, an image that is not base64 is that image's error, not the
 * request's: one bad entry in a folder's worth must not cost the others their answers.
 */
async function imagesFromRequest(req: FastifyRequest, limit: number, maxImages: number): Promise<(Upload | { error: ServiceError })[]> {
  if (req.isMultipart()) return imagesFromMultipart(req, limit, maxImages);
  const type = contentType(req);
  if (type !== 'application/json' || Buffer.isBuffer(req.body)) throw new UnsupportedMediaTypeError(type, true);
  const { images } = parseRequest(PredictBatchJsonBody, req.body ?? {}, 'body');
  if (images.length > maxImages) throw new TooManyImagesError(maxImages);
  const uploads = images.map((image, i) => {
    try {
      return imageFromBase64(image, `body.images[${i}]`);
    } catch (err) {
      return { error: err as ServiceError };
    }
  });
  const total = uploads.reduce((sum, u) => sum + ('bytes' in u ? u.bytes.length : 0), 0);
  if (total > limit) throw new PayloadTooLargeError(limit, true);
  return uploads;
}

/** Needs the servingPlugin (`app.serving`). */
export async function predictRoutes(app: FastifyInstance) {
  const serving = app.serving;
  const limit = serving.maxImageBytes;
  await app.register(multipart, { limits: { fileSize: limit, files: 1, fields: MAX_MULTIPART_FIELDS }, throwFileSizeLimit: true });
  app.addContentTypeParser(RAW_IMAGE_MEDIA_TYPES, { parseAs: 'buffer', bodyLimit: limit }, (_req, body, done) => done(null, body));
  // Any other type (curl's --data-binary sends application/x-www-form-urlencoded unless told) is
  // refused saying what to send, not with Fastify's bare "Unsupported Media Type".
  app.addContentTypeParser('*', (req, _payload, done) =>
    done(new UnsupportedMediaTypeError(contentType(req), req.routeOptions.url === '/v1/predict/batch'), undefined),
  );

  const handler = async (req: FastifyRequest) => {
    const query = parseRequest(PredictQuery, req.query, 'query');
    const { bytes, declared } = await imageFromRequest(req, limit);
    const result = await serving.predict(bytes, { modelId: query.model, topK: query.topK, declared });
    req.log.debug({ modelId: result.model.id, ...result.timings }, 'predicted');
    return result;
  };
  // Base64 JSON is 4/3 of the image; the raw and multipart paths check `limit` themselves.
  const options = { bodyLimit: Math.ceil((limit * 4) / 3) + 4096, config: { access: 'predict' as const } };
  for (const url of PREDICT_URLS) app.post(url, options, handler);

  const maxImages = serving.maxImagesPerRequest;
  const limits: PredictLimits = {
    maxImagesPerRequest: maxImages,
    maxBytesPerRequest: limit,
    maxImagePixels: serving.maxImagePixels,
    mediaTypes: RAW_IMAGE_MEDIA_TYPES,
  };
  app.get('/v1/predict/limits', { config: { access: 'predict' as const } }, async () => limits);

  app.post(
    '/v1/predict/batch',
    // Each JSON entry adds its quotes, comma and perhaps a data: URL prefix to the 4/3.
    { bodyLimit: Math.ceil((limit * 4) / 3) + 4096 + maxImages * 256, config: { access: 'predict' as const } },
    async (req: FastifyRequest) => {
      const query = parseRequest(PredictQuery, req.query, 'query');
      const uploads = await imagesFromRequest(req, limit, maxImages);
      const answered = await serving.predictBatch(
        uploads.map((u) => ('bytes' in u ? { image: u.bytes, declared: u.declared } : { error: { code: u.error.code, message: u.error.message } })),
        { modelId: query.model, topK: query.topK },
      );
      const results = uploads.map((u, index) => ({
        index,
        ...('filename' in u && u.filename !== undefined ? { filename: u.filename } : {}),
        ...answered.results[index],
      }));
      req.log.debug({ modelId: answered.model?.id, images: uploads.length }, 'predicted a batch');
      return { model: answered.model, results };
    },
  );
}

export default predictRoutes;
