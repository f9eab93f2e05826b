// Small file-system questions and tidy-ups that several layers ask, answered one way.
import { promises as fs } from 'node:fs';
import path from 'node:path';

/** Whether `p` is a regular file (false when it is missing or unreadable). */
export const isFile = (p: string): Promise<boolean> =>
  fs.stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

/** Whether `p` is a directory (false when it is missing or unreadable). */
export const isDirectory = (p: string): Promise<boolean> =>
  fs.stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );

/**
 * Removes `dir`, then each parent in turn, while `within` holds for it and it is empty; stops at the
 * first that is not (or cannot be removed).
 */
export async function removeEmptyDirs(dir: string, within: (d: string) => boolean): Promise<void> {
  for (let d = dir; within(d) && d !== path.dirname(d); d = path.dirname(d)) {
    const removed = await fs.rmdir(d).then(
      () => true,
      () => false,
    );
    if (!removed) return;
  }
}
