// /v1/models: the exported int8 models. GET lists them (newest first, with which one serves),
// GET /:id returns the model's manifest, GET /:id/download the .onnx file, and POST /:id/promote
// pins a model as the serving one (otherwise the newest model serves).
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ModelNotFoundError, ModelUnavailableError } from '../../serving/errors.js';
import type { ModelRecord } from '../../serving/model-store.js';
import { readManifest } from '../../serving/model-registry.js';
import type { ServingService } from '../../serving/prediction-service.js';
import { servingFor } from '../../serving/plugin.js';
import { parseRequest } from '../validate.js';

export const ModelIdParams = z.object({ id: z.string().min(1).max(100) });

export interface ModelsRoutesOptions {
  serving?: ServingService;
  prisma?: unknown;
}

export function modelView(m: ModelRecord, servingId: string | null) {
  return {
    id: m.id,
    jobId: m.jobId,
    createdAt: m.createdAt.toISOString(),
    inputSize: m.inputSize,
    classes: m.classes,
    sizeBytes: m.sizeBytes,
    float32SizeBytes: m.float32SizeBytes,
    sha256: m.sha256,
    floatTop1: m.floatTop1,
    int8Top1: m.int8Top1,
    agreement: m.agreement,
    promotedAt: m.promotedAt ? m.promotedAt.toISOString() : null,
    serving: m.id === servingId,
    links: { manifest: `/v1/models/${m.id}`, download: `/v1/models/${m.id}/download` },
  };
}

export async function modelsRoutes(app: FastifyInstance, opts: ModelsRoutesOptions) {
  const serving = opts.serving ?? (await servingFor(app, opts.prisma));
  const { store, registry } = serving;

  const find = async (id: string): Promise<ModelRecord> => {
    const m = await store.get(id);
    if (!m) throw new ModelNotFoundError(id);
    return m;
  };

  app.get('/v1/models', async () => {
    const models = await store.list();
    const target = await store.serving();
    return { items: models.map((m) => modelView(m, target?.id ?? null)), servingId: target?.id ?? null, loadedId: registry.currentId() };
  });

  app.get('/v1/models/:id', async (req) => {
    const m = await find(parseRequest(ModelIdParams, req.params, 'params').id);
    return { model: modelView(m, (await store.serving())?.id ?? null), manifest: await readManifest(m) };
  });

  app.get('/v1/models/:id/download', async (req, reply) => {
    const m = await find(parseRequest(ModelIdParams, req.params, 'params').id);
    const info = await stat(m.onnxPath).catch(() => null);
    if (!info) throw new ModelUnavailableError(m.id, 'its file is missing');
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', info.size)
      .header('content-disposition', `attachment; filename="model-${m.id}.onnx"`)
      .header('x-model-sha256', m.sha256)
      .send(createReadStream(m.onnxPath));
  });

  app.post('/v1/models/:id/promote', async (req) => {
    const { id } = parseRequest(ModelIdParams, req.params, 'params');
    const m = await store.promote(id);
    if (!m) throw new ModelNotFoundError(id);
    // Swap now rather than at the next poll, so the answer reflects what serves.
    await registry.refresh();
    req.log.info({ modelId: id }, 'model promoted');
    return { model: modelView(m, registry.currentId()) };
  });
}

export default modelsRoutes;
