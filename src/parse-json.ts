// Text that another process wrote (a database column, a Redis entry) read against its schema: an
// entry written by another version, or cut short, reads as absent instead of throwing.
import type { z } from 'zod';

/** `text` as JSON that `schema` accepts; null when it is absent, not JSON, or does not match. */
export function parseJsonAs<T>(schema: z.ZodType<T>, text: string | null): T | null {
  if (!text) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = schema.safeParse(raw);
  return parsed.success ? parsed.data : null;
}
