// What the API shows of an exported model, in one schema: a job's `model` (GET /v1/jobs/:id) and
// each entry of /v1/models (which adds whether it serves and its links) are built from the same
// ModelRecord (src/db/model-rows.ts, the one module that reads and writes Model rows) by the same
// function, so the two views cannot drift apart.
import { z } from 'zod';
import type { ModelRecord } from '../db/model-rows.js';

export const ModelSummary = z.object({
  id: z.string(),
  jobId: z.string(),
  createdAt: z.iso.datetime(),
  inputSize: z.number().int(),
  classes: z.array(z.string()),
  sizeBytes: z.number().int(),
  float32SizeBytes: z.number().int(),
  sha256: z.string(),
  floatTop1: z.number().nullable(),
  int8Top1: z.number().nullable(),
  agreement: z.number().nullable(),
  promotedAt: z.iso.datetime().nullable(),
});
export type ModelSummary = z.infer<typeof ModelSummary>;

export function toModelSummary(m: ModelRecord): ModelSummary {
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
  };
}
