// /v1/models: the exported int8 models. GET lists them (newest first, with which one serves),
// GET /:id returns the model's manifest, GET /:id/download the .onnx file (all: `predict` scope),
// and POST /:id/promote (admin) pins a model as the serving one once it has loaded and answered
// a test image (otherwise the newest model of an admin's or auth-off job serves).
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ModelNotFoundError, ModelUnavailableError } from '../../serving/errors.js';
import { completeEvaluation, ModelEvaluation } from '../../export/evaluation.js';
import type { ModelRecord } from '../../serving/model-store.js';
import { ModelSummary, toModelSummary } from '../../jobs/model-view.js';
import { decodeCursor, keysetPage, PageQuery } from '../../jobs/page-cursor.js';
import { parseRequest } from '../validate.js';
import { errorRef, jsonRef, jsonSchema, queryParams, secured } from '../openapi-helpers.js';

export const ModelIdParams = z.object({ id: z.string().min(1).max(100) });

/** The model summary a job shows too (src/jobs/model-view.ts), with its serving state and links. */
export const ModelView = ModelSummary.extend({
  /** True for the model that answers /v1/predict without ?model=. */
  serving: z.boolean(),
  links: z.object({ manifest: z.string(), download: z.string() }),
});
export const ModelList = z.object({
  /** A page of models, newest first. */
  items: z.array(ModelView),
  /** Pass as `cursor` for the next (older) page; null on the last one. */
  nextCursor: z.string().nullable(),
  /** The model that should serve (promoted, else the newest of a job created by an admin key or with auth off). */
  servingId: z.string().nullable(),
  /** The model this process has loaded and serves right now (equal once a swap is done). */
  loadedId: z.string().nullable(),
});
export const ModelDetail = z.object({ model: ModelView, manifest: z.record(z.string(), z.unknown()) });

export const ModelEvaluationResponse = z.object({
  modelId: z.string(),
  classes: z.array(z.string()),
  /** The manifest's `evaluation` (an older manifest's in today's shape); null for models exported before manifests carried one. */
  evaluation: ModelEvaluation.nullable(),
});
export const PromoteResponse = z.object({ model: ModelView });

const ok = jsonRef;
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };

/** These routes' part of openapi.yaml (merged by src/api/openapi.ts). */
export const openapi = {
  paths: {
    '/v1/models': {
      get: secured('predict', {
        operationId: 'listModels',
        summary: 'Exported int8 models, newest first, a page at a time, and which one serves',
        parameters: queryParams(PageQuery),
        responses: { '200': ok('ModelList', 'A page of models'), '400': errorRef('Invalid query') },
      }),
    },
    '/v1/models/{id}': {
      get: secured('predict', {
        operationId: 'getModel',
        summary: 'A model and its manifest (labels, input size, normalisation, quantization, accuracy, sha256)',
        parameters: [idParam],
        responses: {
          '200': ok('ModelDetail', 'The model'),
          '404': errorRef('Unknown model'),
          '503': errorRef('The manifest cannot be read (MODEL_UNAVAILABLE) or is not a valid manifest of this model (MODEL_MANIFEST_INVALID)'),
        },
      }),
    },
    '/v1/models/{id}/evaluation': {
      get: secured('predict', {
        operationId: 'getModelEvaluation',
        summary: "The export's final evaluation of the int8 model: top-1, top-5, per class, the most frequent mistakes and the confusion matrix",
        description:
          '`evaluation` is null for a model whose manifest has none (exported by an older version). `confusion[true][predicted]` is there for models of at most 100 classes (null above: its classes² counts made manifests too large to read); `topConfusions` lists the 100 most frequent mistakes, as class indexes, for every model.',
        parameters: [idParam],
        responses: {
          '200': ok('ModelEvaluationResponse', 'The evaluation'),
          '404': errorRef('Unknown model'),
          '503': errorRef('The manifest cannot be read (MODEL_UNAVAILABLE) or is not a valid manifest of this model (MODEL_MANIFEST_INVALID)'),
        },
      }),
    },
    '/v1/models/{id}/download': {
      get: secured('predict', {
        operationId: 'downloadModel',
        summary: 'The int8 ONNX file',
        parameters: [idParam],
        responses: {
          '200': { description: 'model.onnx', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
          '404': errorRef('Unknown model'),
          '503': errorRef('The file is missing'),
        },
      }),
    },
    '/v1/models/{id}/promote': {
      post: secured('admin', {
        operationId: 'promoteModel',
        summary: 'Pin this model as the serving one, after loading it and checking it answers (otherwise the newest auto-serving model serves)',
        parameters: [idParam],
        responses: {
          '200': ok('PromoteResponse', 'Promoted; the server has swapped to it'),
          '404': errorRef('Unknown model'),
          '503': errorRef('The model cannot be loaded or does not answer (MODEL_UNAVAILABLE); nothing changed'),
        },
      }),
    },
  },
  schemas: {
    ModelList: jsonSchema(ModelList),
    ModelDetail: jsonSchema(ModelDetail),
    PromoteResponse: jsonSchema(PromoteResponse),
    ModelEvaluationResponse: jsonSchema(ModelEvaluationResponse),
  },
};

export function modelView(m: ModelRecord, servingId: string | null): z.infer<typeof ModelView> {
  return {
    ...toModelSummary(m),
    serving: m.id === servingId,
    links: { manifest: `/v1/models/${m.id}`, download: `/v1/models/${m.id}/download` },
  };
}

/** Needs the servingPlugin (`app.serving`). */
export async function modelsRoutes(app: FastifyInstance) {
  const { store, registry } = app.serving;
  const read = { config: { access: 'predict' as const } };

  const find = async (id: string): Promise<ModelRecord> => {
    const m = await store.get(id);
    if (!m) throw new ModelNotFoundError(id);
    return m;
  };

  // Paged like /v1/jobs: a deployment's models only grow, and all 10,000 of them (4.7 MB) took the
  // SQLite API 170-217 ms per request, which a dashboard asked for every 3 s.
  app.get('/v1/models', read, async (req) => {
    const q = parseRequest(PageQuery, req.query, 'query');
    const { page, nextCursor } = keysetPage(await store.list({ take: q.limit + 1, after: q.cursor ? decodeCursor(q.cursor) : undefined }), q.limit);
    const target = await store.serving();
    return {
      items: page.map((m) => modelView(m, target?.id ?? null)),
      nextCursor,
      servingId: target?.id ?? null,
      loadedId: registry.currentId(),
    };
  });

  app.get('/v1/models/:id', read, async (req) => {
    const m = await find(parseRequest(ModelIdParams, req.params, 'params').id);
    return { model: modelView(m, (await store.serving())?.id ?? null), manifest: await store.manifest(m) };
  });

  app.get('/v1/models/:id/evaluation', read, async (req) => {
    const m = await find(parseRequest(ModelIdParams, req.params, 'params').id);
    // The manifest is checked as it is read (a malformed one is a 503 MODEL_MANIFEST_INVALID).
    const stored = (await store.manifest(m)).evaluation;
    return { modelId: m.id, classes: m.classes, evaluation: stored ? completeEvaluation(stored) : null };
  });

  app.get('/v1/models/:id/download', read, async (req, reply) => {
    const m = await find(parseRequest(ModelIdParams, req.params, 'params').id);
    // A local copy checked against the row's sha256 (fetched from the artifact store if needed).
    const file = await store.modelFile(m);
    const info = await stat(file).catch(() => null);
    if (!info) {
      req.log.warn({ modelId: m.id, onnxKey: m.onnxKey }, 'download: the model file is missing');
      throw new ModelUnavailableError(m.id, 'its file is missing');
    }
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', info.size)
      .header('content-disposition', `attachment; filename="model-${m.id}.onnx"`)
      .header('x-model-sha256', m.sha256)
      .send(createReadStream(file));
  });

  app.post('/v1/models/:id/promote', { config: { access: 'admin' } }, async (req) => {
    const { id } = parseRequest(ModelIdParams, req.params, 'params');
    const record = await find(id);
    // Loaded and tried before the promotion is recorded; the swap happens before the answer.
    const m = await registry.promote(record, () => store.promote(id));
    if (!m) throw new ModelNotFoundError(id);
    req.log.info({ modelId: id }, 'model promoted');
    return { model: modelView(m, registry.currentId()) };
  });
}

export default modelsRoutes;
