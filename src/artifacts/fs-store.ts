// ARTIFACT_STORE=fs (the default): objects are files under a root directory (ARTIFACTS_DIR), a key
// is a relative path. A write stages its files under `<root>/.staging/<id>/`, each written and
// fsynced, and commit() renames the staged directory into place, so the prefix switches from the
// old set to the new one with a rename. Only directories a commit renamed into place are visible.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ArtifactNotFoundError, checkKey, joinKey, type ArtifactStore, type ArtifactWrite, type ObjectInfo } from './artifact-store.js';
import { syncDir } from './durable.js';
import { removeEmptyDirs } from '../file-system.js';

const STAGING = '.staging';
const TRASH = '.trash';

export class FsArtifactStore implements ArtifactStore {
  readonly kind = 'fs' as const;
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  private file(key: string): string {
    return path.join(this.root, ...checkKey(key).split('/'));
  }

  begin(prefix: string): ArtifactWrite {
    const dest = checkKey(prefix);
    const staging = path.join(this.root, STAGING, randomUUID());
    const written: ObjectInfo[] = [];
    let done = false;
    return {
      put: async (name, body) => {
        if (done) throw new Error(`write to ${dest} already committed or aborted`);
        const key = joinKey(dest, name);
        const file = path.join(staging, ...checkKey(name).split('/'));
        await fs.mkdir(path.dirname(file), { recursive: true });
        const hash = createHash('sha256');
        let size = 0;
        const fh = await fs.open(file, 'w');
        try {
          const source = body instanceof Uint8Array ? [body] : (body as AsyncIterable<Buffer>);
          for await (const c of source) {
            hash.update(c);
            size += c.length;
            await fh.write(c);
          }
          await fh.sync();
        } finally {
          await fh.close();
        }
        const info = { key, sizeBytes: size, sha256: hash.digest('hex') };
        written.push(info);
        return info;
      },
      commit: async () => {
        if (done) throw new Error(`write to ${dest} already committed or aborted`);
        done = true;
        const target = this.file(dest);
        await fs.mkdir(staging, { recursive: true });
        await syncTree(staging);
        await fs.mkdir(path.dirname(target), { recursive: true });
        // A rename cannot replace a non-empty directory: move the old set aside first. Keys are
        // made unique by their writers wherever two writers could meet, so this window (the
        // prefix briefly absent) only affects a writer replacing its own earlier set.
        const old = path.join(this.root, TRASH, randomUUID());
        let hadOld = false;
        try {
          await fs.mkdir(path.dirname(old), { recursive: true });
          await fs.rename(target, old);
          hadOld = true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        await fs.rename(staging, target);
        await syncDir(path.dirname(target));
        if (hadOld) await fs.rm(old, { recursive: true, force: true });
        return written;
      },
      abort: async () => {
        done = true;
        await fs.rm(staging, { recursive: true, force: true });
      },
    };
  }

  async get(key: string): Promise<Readable> {
    const file = this.file(key);
    const info = await fs.stat(file).catch(() => null);
    if (!info?.isFile()) throw new ArtifactNotFoundError(key);
    return createReadStream(file);
  }

  localPath(key: string): string {
    return this.file(key);
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const info = await fs.stat(this.file(key)).catch(() => null);
    return info?.isFile() ? { key: checkKey(key), sizeBytes: info.size } : null;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const base = checkKey(prefix);
    const out: ObjectInfo[] = [];
    const walk = async (dir: string, keyPrefix: string): Promise<void> => {
      const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        if (e.name.startsWith('.')) continue;
        const key = `${keyPrefix}/${e.name}`;
        if (e.isDirectory()) await walk(path.join(dir, e.name), key);
        else if (e.isFile()) out.push({ key, sizeBytes: (await fs.stat(path.join(dir, e.name))).size });
      }
    };
    await walk(this.file(base), base);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(prefix: string): Promise<number> {
    const base = checkKey(prefix);
    const n = (await this.list(base)).length;
    const dir = this.file(base);
    // Out of sight first (one rename), then removed: a reader never lists a half-deleted set.
    const old = path.join(this.root, TRASH, randomUUID());
    await fs.mkdir(path.dirname(old), { recursive: true });
    try {
      await fs.rename(dir, old);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    await fs.rm(old, { recursive: true, force: true });
    // Parent folders left empty ("models/<id>" once its last object is gone) go too.
    await removeEmptyDirs(path.dirname(dir), (d) => d.startsWith(this.root + path.sep));
    return n;
  }

  async collectGarbage(olderThanMs: number): Promise<number> {
    let n = 0;
    for (const area of [STAGING, TRASH]) {
      const dir = path.join(this.root, area);
      for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
        const p = path.join(dir, name);
        const st = await fs.stat(p).catch(() => null);
        if (st && Date.now() - st.mtimeMs > olderThanMs) {
          await fs.rm(p, { recursive: true, force: true });
          n++;
        }
      }
    }
    return n;
  }

  async close(): Promise<void> {}
}

/** fsyncs every directory of a staged tree (the files were synced as they were written). */
async function syncTree(dir: string): Promise<void> {
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) await syncTree(path.join(dir, e.name));
  }
  await syncDir(dir);
}
