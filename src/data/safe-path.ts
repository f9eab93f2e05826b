// Dataset paths come from API clients, so they are resolved only inside the server's data root.
// Lexical checks catch `..` and absolute paths; realpath catches symlinks that lead outside.
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
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

/** The same text in one Unicode form: macOS writes names decomposed (NFD), clients type them composed. */
export const nfc = (name: string) => name.normalize('NFC');

/**
 * `rel` under `root` by text, for a path not found byte for byte: each missing segment taken as the
 * one entry of its folder with the same text in Unicode's composed form. A folder made on a Mac and
 * copied or unzipped here is named decomposed ("café" as e + U+0301), and the name a client types
 * ("café", U+00E9) was not found. Returns the path, or the entries of the folder where it stopped
 * that differ from the missing segment only in case (for a "did you mean").
 */
async function findByText(root: string, rel: string): Promise<string | string[]> {
  let at = root;
  for (const segment of rel.split(path.sep)) {
    const exact = path.join(at, segment);
    if (await exists(exact)) {
      at = exact;
      continue;
    }
    const names = await readdir(at).catch(() => [] as string[]);
    const same = names.filter((n) => nfc(n) === nfc(segment));
    if (same.length !== 1) return names.filter((n) => nfc(n).toLowerCase() === nfc(segment).toLowerCase());
    at = path.join(at, same[0]);
  }
  return at;
}

/** `relPath` under `root` as given when that exists, else as findByText finds it; else DATASET_NOT_FOUND. */
async function existingPath(root: string, relPath: string): Promise<string> {
  const lexical = path.resolve(root, relPath);
  if (await exists(lexical)) return lexical;
  const found = await findByText(root, path.relative(root, lexical));
  if (typeof found === 'string') return found;
  const hint = found.length ? `; did you mean ${found.map((n) => `"${n}"`).join(' or ')}?` : '';
  throw new DatasetPathError('DATASET_NOT_FOUND', `dataset folder "${relPath}" does not exist under the data root (DATA_ROOT)${hint}`);
}

const exists = (p: string) =>
  lstat(p).then(
    () => true,
    () => false,
  );

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
  let real: string;
  try {
    real = await realpath(await existingPath(rootReal, relPath));
  } catch (err) {
    if (err instanceof DatasetPathError) throw err;
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
