// Pages of GET /v1/jobs and GET /v1/models: newest first (src/db/keyset.ts), the cursor the last
// row's key, opaque to clients.
import { z } from 'zod';
import { PRINTABLE } from '../config/training-config.js';
import type { RowKey } from '../db/keyset.js';
import { ValidationError } from './job-errors.js';

/** The query fields of such a page. */
export const PageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  /** The `nextCursor` of the previous page. */
  cursor: z.string().min(1).max(200).optional(),
});

export function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(JSON.stringify([createdAt.toISOString(), id])).toString('base64url');
}

export function decodeCursor(cursor: string): RowKey {
  try {
    const [at, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string];
    const createdAt = new Date(at);
    // Only what a cursor of ours holds: an id without control characters and a creation time the
    // database can compare (PostgreSQL refuses years outside its range with an error).
    const year = createdAt.getUTCFullYear();
    if (typeof id !== 'string' || !PRINTABLE.test(id) || !(year >= 1970 && year <= 9999)) throw new Error('bad');
    return { createdAt, id };
  } catch {
    throw new ValidationError('VALIDATION_FAILED', 'invalid cursor', [{ path: 'cursor', message: 'not a cursor returned by this API' }]);
  }
}

/** `rows` read with `take: limit + 1`: the page, and the cursor of the next one (null on the last). */
export function keysetPage<T extends RowKey>(rows: T[], limit: number): { page: T[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { page, nextCursor: rows.length > limit && last ? encodeCursor(last.createdAt, last.id) : null };
}
