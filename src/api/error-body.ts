// The one error shape of every route: {error: {code, message, issues: [{path, message}]}}.
import { z } from 'zod';

export const ErrorBody = z.object({
  error: z.object({
    /** Stable machine-readable code, e.g. CONFIG_INVALID, JOB_NOT_FOUND, JOB_STATE_CONFLICT. */
    code: z.string(),
    message: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export function errorBody(code: string, message: string, issues: ErrorBody['error']['issues'] = []): ErrorBody {
  return { error: { code, message, issues } };
}
