// Newest-first keyset order of rows keyed by (createdAt, id): the jobs and models lists page with
// it (cursors: src/jobs/page-cursor.ts). The id breaks a tie of creation times.

export interface RowKey {
  createdAt: Date;
  id: string;
}

export const NEWEST_FIRST = [{ createdAt: 'desc' as const }, { id: 'desc' as const }];

/** The Prisma filter for the rows after `key` in NEWEST_FIRST order (every row when there is none). */
export function createdBefore(key: RowKey | undefined) {
  return key ? { OR: [{ createdAt: { lt: key.createdAt } }, { createdAt: key.createdAt, id: { lt: key.id } }] } : {};
}
