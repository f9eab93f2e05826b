// Request validation with the zod schemas themselves (no second copy in JSON Schema): a failure
// becomes the common 400 shape with paths prefixed by the request part.
import type { z } from 'zod';
import { ValidationError, toIssues } from '../jobs/job-errors.js';

export function parseRequest<S extends z.ZodType>(schema: S, value: unknown, part: 'body' | 'query' | 'params'): z.output<S> {
  const r = schema.safeParse(value ?? {});
  if (r.success) return r.data;
  throw new ValidationError('VALIDATION_FAILED', `invalid request ${part}`, toIssues(r.error.issues, part));
}
