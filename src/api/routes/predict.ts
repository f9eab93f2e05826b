// POST /v1/predict: classify one image with the serving model (or ?model=<id>).
// The image arrives as a multipart file field `image`, a raw image/jpeg|png|webp body, or JSON
// {"image": "<base64>"} (a data: URL prefix is accepted). Answers
// {model: {id, jobId}, predictions: [{label, index, probability}], timings: {decodeMs, inferMs, ...}}.
// Uploads over the size limit get 413; bad images 400/415 with an IMAGE_* code (src/serving/errors.ts).
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ServiceError, ValidationError } from '../../jobs/job-errors.js';
import type { ServingService } from '../../serving/prediction-service.js';
import type { ModelFiles } from '../../serving/model-store.js';
import { servingFor } from '../../serving/plugin.js';
import type { ServingSettings } from '../../serving/serving-settings.js';
import { parseRequest } from '../validate.js';

export const PredictQuery = z.object({
  /** How many classes to return, most probable first. */
  topK: z.coerce.number().int().min(1).max(1000).default(5),
  /** A model id other than the serving one. */
  model: z.string().min(1).max(100).optional(),
});

export const PredictJsonBody = z.object({ image: z.string().min(1) });

export const PredictResponse = z.object({
  model: z.object({ id: z.string(), jobId: z.string() }),
  predictions: z.array(z.object({ label: z.string(), index: z.number().int(), probability: z.number() })),
  timings: z.object({
    decodeMs: z.number(),
    inferMs: z.number(),
    /** Time waiting for a worker / batch companions. */
    queueMs: z.number(),
    /** Images in the ORT run that computed this answer (micro-batching). */
    batchSize: z.number().int(),
  }),
});

const jsonSchema = (s: z.ZodType, io: 'input' | 'output' = 'output') => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
};
const errorRef = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });

/** This route's part of openapi.yaml (merged by src/api/openapi.ts). */
export const openapi = {
  paths: {
    '/v1/predict': {
      post: {
        operationId: 'predict',
        summary: 'Classify one image with the serving int8 model (or ?model=<id>)',
        parameters: Object.entries(PredictQuery.shape).map(([name, field]) => ({ name, in: 'query', required: false, schema: jsonSchema(field, 'input') })),
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': { schema: { type: 'object', properties: { image: { type: 'string', format: 'binary' } }, required: ['image'] } },
            'image/jpeg': { schema: { type: 'string', format: 'binary' } },
            'image/png': { schema: { type: 'string', format: 'binary' } },
            'image/webp': { schema: { type: 'string', format: 'binary' } },
            'application/json': { schema: jsonSchema(PredictJsonBody, 'input') },
          },
        },
        responses: {
          '200': { description: 'Top-k classes', content: { 'application/json': { schema: { $ref: '#/components/schemas/PredictResponse' } } } },
          '400': errorRef('Bad image (IMAGE_EMPTY, IMAGE_CORRUPT, IMAGE_ANIMATED, IMAGE_TOO_LARGE) or invalid query/body'),
          '404': errorRef('?model= names no model (MODEL_NOT_FOUND)'),
          '413': errorRef('Upload over the size limit (BODY_TOO_LARGE)'),
          '415': errorRef('Not an accepted image format or content type'),
          '503': errorRef('No model yet (NO_MODEL) or the model cannot be loaded'),
        },
      },
    },
  },
  schemas: { PredictResponse: jsonSchema(PredictResponse) },
};

const RAW_IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp'];
const BASE64 = /^[A-Za-z0-9+/\-_\s]*={0,2}\s*$/;

class PayloadTooLargeError extends ServiceError {
  constructor(limit: number) {
    super(413, 'BODY_TOO_LARGE', `the image is larger than the limit of ${limit} bytes`);
  }
}

class UnsupportedMediaTypeError extends ServiceError {
  constructor(type: string) {
    super(415, 'UNSUPPORTED_MEDIA_TYPE', `content type "${type || 'none'}" is not accepted; send multipart/form-data (field "image"), image/jpeg|png|webp, or application/json {"image": "<base64>"}`);
  }
}

export interface PredictRoutesOptions {
  serving?: ServingService;
  prisma?: unknown;
  /** Model files out of the artifact store (with `prisma`). */
  files?: ModelFiles;
  /** The app's settings; a `serving` member (ServingSettings) configures the pool. */
  settings?: { serving?: Partial<ServingSettings> };
}

async function imageFromRequest(req: FastifyRequest, limit: number): Promise<Buffer> {
  if (req.isMultipart()) {
    const part = await req.file({ limits: { fileSize: limit, files: 1 } });
    if (!part) throw new ValidationError('IMAGE_MISSING', 'the multipart body has no file field "image"', [{ path: 'body.image', message: 'required' }]);
    if (part.fieldname !== 'image') {
      part.file.resume();
      throw new ValidationError('IMAGE_MISSING', `the file field must be named "image", got "${part.fieldname}"`, [{ path: 'body.image', message: 'required' }]);
    }
    return part.toBuffer(); // throws 413 (FST_REQ_FILE_TOO_LARGE) over the limit
  }
  const body = req.body;
  if (Buffer.isBuffer(body)) {
    if (body.length > limit) throw new PayloadTooLargeError(limit);
    return body;
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new UnsupportedMediaTypeError(type);
  if (body === undefined || body === null) return Buffer.alloc(0);
  const { image } = parseRequest(PredictJsonBody, body, 'body');
  const b64 = image.startsWith('data:') ? image.slice(image.indexOf(',') + 1) : image;
  if (!BASE64.test(b64)) throw new ValidationError('IMAGE_BASE64_INVALID', 'body.image is not base64', [{ path: 'body.image', message: 'not base64' }]);
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length > limit) throw new PayloadTooLargeError(limit);
  return bytes;
}

export async function predictRoutes(app: FastifyInstance, opts: PredictRoutesOptions) {
  const serving = opts.serving ?? (await servingFor(app, opts.prisma, opts.settings?.serving, opts.files));
  const limit = serving.maxImageBytes;
  await app.register(multipart, { limits: { fileSize: limit, files: 1, fields: 10 }, throwFileSizeLimit: true });
  app.addContentTypeParser(RAW_IMAGE_TYPES, { parseAs: 'buffer', bodyLimit: limit }, (_req, body, done) => done(null, body));

  // Base64 JSON is 4/3 of the image; the raw and multipart paths check `limit` themselves.
  app.post('/v1/predict', { bodyLimit: Math.ceil((limit * 4) / 3) + 4096 }, async (req) => {
    const query = parseRequest(PredictQuery, req.query, 'query');
    const image = await imageFromRequest(req, limit);
    const result = await serving.predict(image, { modelId: query.model, topK: query.topK });
    req.log.debug({ modelId: result.model.id, ...result.timings }, 'predicted');
    return result;
  });
}

export default predictRoutes;
