// Where models, checkpoints and manifests live. Rows in the database name artifacts by store key,
// never by a local path, so any machine of a deployment can read what any other machine wrote.
//
// Keys are '/'-separated names ("jobs/<job>/checkpoints/step-000012-1a2b3c4d/weights.bin"). A
// write is a set of objects under one prefix, made visible at once by commit(), which replaces
// whatever that prefix held: a reader sees the old set or the new one, never half of either.
//
// Implementations: `fs` (fs-store.ts, under ARTIFACTS_DIR) and `postgres` (postgres-store.ts, in
// the deployment's database). An S3-compatible store fits the same shape: put = multipart upload
// to a staging key, commit = write the object list under the prefix last (readers trust only
// listed objects), delete = delete by prefix. Callers only see this interface (open-store.ts).
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  /** Hex sha256 of the bytes, where the store records it (postgres does; fs does not). */
  sha256?: string;
}

export interface ArtifactWrite {
  /** Streams one object, named relative to the write's prefix. Nothing is visible before commit(). */
  put(name: string, body: Readable | Uint8Array): Promise<ObjectInfo>;
  /** Makes every object put so far visible at once, replacing all that the prefix held before. */
  commit(): Promise<ObjectInfo[]>;
  /** Drops what was staged; idempotent, and safe after a failed put. */
  abort(): Promise<void>;
}

export interface ArtifactStore {
  readonly kind: 'fs' | 'postgres';
  /** Starts an atomic write of the objects under `prefix`. */
  begin(prefix: string): ArtifactWrite;
  /** The object's bytes as a stream. Rejects with ArtifactNotFoundError when there is no such object. */
  get(key: string): Promise<Readable>;
  head(key: string): Promise<ObjectInfo | null>;
  /** The objects under `prefix` (a folder: "a/b" lists "a/b/..." but not "a/bc"), by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deletes every object under `prefix`; returns how many there were. */
  delete(prefix: string): Promise<number>;
  /** The file holding `key`, for stores that keep objects as local files (fs); readers may skip a copy. */
  localPath?(key: string): string;
  /** Removes what writers that crashed mid-write left staged more than `olderThanMs` ago. */
  collectGarbage(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}

export class ArtifactNotFoundError extends Error {
  readonly code = 'ARTIFACT_NOT_FOUND';
  constructor(readonly key: string) {
    super(`no artifact "${key}" in the store`);
    this.name = 'ArtifactNotFoundError';
  }
}

export class ArtifactKeyError extends Error {
  readonly code = 'ARTIFACT_KEY_INVALID';
  constructor(key: string, why: string) {
    super(`artifact key "${key.slice(0, 200)}" ${why}`);
    this.name = 'ArtifactKeyError';
  }
}

export class ArtifactCorruptError extends Error {
  readonly code = 'ARTIFACT_CORRUPT';
  constructor(
    readonly key: string,
    why: string,
  ) {
    super(`artifact "${key}" is corrupt: ${why}`);
    this.name = 'ArtifactCorruptError';
  }
}

const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
const MAX_KEY = 512;

/**
 * Checks a key (or prefix) and returns it without leading/trailing slashes. Segments may not be
 * empty, `.`/`..` or start with a dot (the stores keep their own bookkeeping under dot-names), so
 * no key can leave the store's root on a file system.
 */
export function checkKey(key: string): string {
  const k = key.replace(/^\/+|\/+$/g, '');
  if (k.length === 0) throw new ArtifactKeyError(key, 'is empty');
  if (k.length > MAX_KEY) throw new ArtifactKeyError(key, `is longer than ${MAX_KEY} characters`);
  for (const seg of k.split('/')) {
    if (!SEGMENT.test(seg)) throw new ArtifactKeyError(key, `has an invalid segment "${seg.slice(0, 50)}"`);
  }
  return k;
}

/** `prefix/name`, both checked. */
export function joinKey(prefix: string, name: string): string {
  return `${checkKey(prefix)}/${checkKey(name)}`;
}
