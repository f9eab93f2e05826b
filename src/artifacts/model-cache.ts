// The API's local copies of model files. ONNX Runtime loads a model from a file, and the store
// may be another machine's disk or the database; so each model file is downloaded once into the
// cache directory, named by its sha256, and checked against that sha256: after the download, and
// again the first time this process uses a copy it finds already there (a disk can rot, a
// previous process can have died mid-rename). A store that keeps files locally (fs) is read in
// place, its file checked every time it is handed out. A mismatch is never served.
// Every model ever served or downloaded would otherwise stay on the API's disk: after each
// download the least recently used copies go until the cache fits its byte budget, and copies of
// deleted models go as the registry finds them (dropDeleted). Removing a file a download is
// streaming is safe on POSIX (open handles keep the bytes), and a loaded model needs its file no
// more (the predictor pool keeps the bytes); the next use downloads it again.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ArtifactCorruptError, ArtifactNotFoundError, type ArtifactStore } from './artifact-store.js';
import { isFile } from '../file-system.js';

const SHA256 = /^[0-9a-f]{64}$/;
/** How long after its last use a deleted model's copy may still be opened by whoever was handed it. */
export const DROP_GRACE_MS = 60_000;

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export class ModelFileCache {
  private readonly verified = new Set<string>();
  private readonly pending = new Map<string, Promise<string>>();

  constructor(
    readonly store: ArtifactStore,
    readonly dir: string = path.join(os.tmpdir(), 'qatserve-model-cache'),
    readonly maxBytes: number = 2048 * 1024 * 1024,
  ) {}

  /** A local file holding exactly the bytes of `key`, whose sha256 must be `sha256`. */
  file(key: string, sha256: string): Promise<string> {
    if (!SHA256.test(sha256)) return Promise.reject(new ArtifactCorruptError(key, `"${sha256}" is not a sha256`));
    let p = this.pending.get(sha256);
    if (!p) {
      p = this.fetch(key, sha256).finally(() => this.pending.delete(sha256));
      this.pending.set(sha256, p);
    }
    return p;
  }

  private async fetch(key: string, sha256: string): Promise<string> {
    if (this.store.localPath) {
      const file = this.store.localPath(key);
      const got = await sha256File(file).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'ENOENT' ? new ArtifactNotFoundError(key) : err;
      });
      if (got !== sha256) throw new ArtifactCorruptError(key, `its sha256 is ${got}, the model row says ${sha256}`);
      return file;
    }
    const target = path.join(this.dir, `${sha256}${path.extname(key)}`);
    if (this.verified.has(sha256) && (await isFile(target))) return touch(target);
    if (await isFile(target)) {
      if ((await sha256File(target)) === sha256) {
        this.verified.add(sha256);
        return touch(target);
      }
      await fs.rm(target, { force: true });
    }
    await fs.mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.part-${randomUUID()}`);
    const hash = createHash('sha256');
    try {
      await pipeline(
        await this.store.get(key),
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const c of chunks) {
            hash.update(c);
            yield c;
          }
        },
        createWriteStream(tmp),
      );
      const got = hash.digest('hex');
      if (got !== sha256) throw new ArtifactCorruptError(key, `its sha256 is ${got}, the model row says ${sha256}`);
      await fs.rename(tmp, target);
    } finally {
      await fs.rm(tmp, { force: true });
    }
    this.verified.add(sha256);
    await this.prune(target);
    return target;
  }

  /** Removes the least recently used copies (by mtime, which each use renews) over the budget; never `keep`. */
  private async prune(keep: string): Promise<void> {
    const names = (await fs.readdir(this.dir)).filter((n) => !n.startsWith('.part-'));
    const files = (
      await Promise.all(
        names.map(async (n) => {
          const file = path.join(this.dir, n);
          const st = await fs.stat(file).catch(() => null);
          return st?.isFile() ? { file, size: st.size, used: st.mtimeMs } : null;
        }),
      )
    ).filter((f) => f !== null);
    let total = files.reduce((sum, f) => sum + f.size, 0);
    for (const f of overBudget(files, total, this.maxBytes, keep)) {
      await fs.rm(f.file, { force: true });
      this.verified.delete(path.basename(f.file, path.extname(f.file)));
      total -= f.size;
    }
  }

  /**
   * Removes the copies of models that no longer exist (their jobs were deleted, on any replica), so
   * a deleted model's bytes do not stay on this machine until the byte budget pushes them out.
   * `stillStored` says which of the given sha256s a model still has. A copy used in the last
   * `graceMs` stays: whoever was handed it may not have opened it yet. Returns how many went.
   */
  async dropDeleted(stillStored: (sha256s: string[]) => Promise<Set<string>>, graceMs = DROP_GRACE_MS): Promise<number> {
    if (this.store.localPath) return 0; // read in place: deleting the model deleted the file
    const copies = (await fs.readdir(this.dir).catch(() => [] as string[]))
      .map((name) => ({ name, sha256: path.basename(name, path.extname(name)) }))
      .filter((c) => SHA256.test(c.sha256));
    if (copies.length === 0) return 0;
    const kept = await stillStored([...new Set(copies.map((c) => c.sha256))]);
    let removed = 0;
    for (const c of copies) {
      if (kept.has(c.sha256) || this.pending.has(c.sha256)) continue;
      const file = path.join(this.dir, c.name);
      const st = await fs.stat(file).catch(() => null);
      if (!st?.isFile() || Date.now() - st.mtimeMs < graceMs) continue;
      await fs.rm(file, { force: true });
      this.verified.delete(c.sha256);
      removed++;
    }
    return removed;
  }

  /** A small object (a manifest) read whole, refusing anything over `maxBytes`. */
  async readSmall(key: string, maxBytes = 4 << 20): Promise<Buffer> {
    const parts: Buffer[] = [];
    let size = 0;
    for await (const c of await this.store.get(key)) {
      size += (c as Buffer).length;
      if (size > maxBytes) throw new ArtifactCorruptError(key, `larger than ${maxBytes} bytes`);
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts, size);
  }
}

interface CachedFile {
  file: string;
  size: number;
  used: number;
}

/** The files to remove, oldest use first, until the rest fit in `maxBytes`. */
export function overBudget(files: CachedFile[], total: number, maxBytes: number, keep: string): CachedFile[] {
  const out: CachedFile[] = [];
  for (const f of [...files].sort((a, b) => a.used - b.used)) {
    if (total <= maxBytes) break;
    if (f.file === keep) continue;
    out.push(f);
    total -= f.size;
  }
  return out;
}

async function touch(file: string): Promise<string> {
  const now = new Date();
  await fs.utimes(file, now, now).catch(() => undefined);
  return file;
}
