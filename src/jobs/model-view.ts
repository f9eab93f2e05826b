// What the API shows of an exported model, in one schema: a job's `model` (GET /v1/jobs/:id) and
// each entry of /v1/models (which adds whether it serves and its links) are built from the same
// ModelRecord (src/db/model-rows.ts, the one module that reads and writes Model rows) by the same
// function, so the two views cannot drift apart. Its fields are the row's ModelFacts, whose types
// come from the manifest schema (src/export/manifest.ts), plus the row's id and dates.
import { z } from 'zod';
import { ModelFacts, type ModelRecord } from '../db/model-rows.js';

const { jobId, ...facts } = ModelFacts.shape;

export const ModelSummary = z.object({
  id: z.string(),
  jobId,
  createdAt: z.iso.datetime(),
  ...facts,
  promotedAt: z.iso.datetime().nullable(),
});
export type ModelSummary = z.infer<typeof ModelSummary>;

/** The summary of a Model row: the schema picks the fields (the store keys and autoServe stay inside). */
export function toModelSummary(m: ModelRecord): ModelSummary {
  return ModelSummary.parse({ ...m, createdAt: m.createdAt.toISOString(), promotedAt: m.promotedAt ? m.promotedAt.toISOString() : null });
}
