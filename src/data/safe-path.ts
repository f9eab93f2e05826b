// Dataset paths come from API clients, so they are resolved only inside the server's data root.
// Lexical checks catch `..` and absolute paths; realpath catches symlinks that lead outside.
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { DatasetPathError } from './errors.js';

/** True when `p` is `root` itself or inside it (both already absolute and normalized). */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!isParentRef(rel) && !path.isAbsolute(rel));
}

function isParentRef(rel: string): boolean {
  // `..foo` is a legitimate name; only `..` as a whole first segment climbs out.
  return rel === '..' || rel.startsWith('..' + path.sep);
}

/**
 * The checks a dataset path passes before any disk is read: relative, without NUL, not climbing out
 * with `..`. An API that does not hold the workers' datasets checks only these (job-service.ts).
 */
export function checkRelativePath(relPath: string): void {
  if (typeof relPath !== 'string' || relPath.trim() === '') {
    throw new DatasetPathError('DATASET_PATH_INVALID', 'dataset path is empty');
  }
  if (relPath.includes('\0')) {
    throw new DatasetPathError('DATASET_PATH_INVALID', 'dataset path contains a NUL byte');
  }
  if (path.isAbsolute(relPath) || path.win32.isAbsolute(relPath)) {
    throw new DatasetPathError('DATASET_PATH_INVALID', `dataset path must be relative to the data root, got absolute path "${relPath}"`);
  }
  if (isParentRef(path.normalize(relPath))) {
    throw new DatasetPathError('DATASET_PATH_INVALID', `dataset path "${relPath}" points outside the data root`);
  }
}

/**
 * Resolve `relPath` under `dataRoot` and return the real (symlink-free) absolute folder path.
 * Throws DatasetPathError: 'DATASET_PATH_INVALID' for absolute paths, `..` escapes, symlinks out of
 * the root and non-folders; 'DATASET_NOT_FOUND' when the folder (or the root) does not exist.
 */
export async function resolveUnderRoot(dataRoot: string, relPath: string): Promise<string> {
  checkRelativePath(relPath);
  let rootReal: string;
  try {
    rootReal = await realpath(dataRoot);
  } catch {
    throw new DatasetPathError('DATASET_NOT_FOUND', `the data root (DATA_ROOT) "${dataRoot}" does not exist`);
  }
  const lexical = path.resolve(rootReal, relPath);
  let real: string;
  try {
    real = await realpath(lexical);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new DatasetPathError('DATASET_NOT_FOUND', `dataset folder "${relPath}" does not exist under the data root (DATA_ROOT)`);
    }
    throw new DatasetPathError('DATASET_PATH_INVALID', `dataset path "${relPath}" cannot be read (${code ?? 'error'})`);
  }
  if (!isInside(rootReal, real)) {
    throw new DatasetPathError('DATASET_PATH_INVALID', `dataset path "${relPath}" is a symlink that leads outside the data root`);
  }
  if (!(await stat(real)).isDirectory()) {
    throw new DatasetPathError('DATASET_PATH_INVALID', `dataset path "${relPath}" is not a folder`);
  }
  return real;
}
