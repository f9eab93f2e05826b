// Directories in and out of an artifact store: a checkpoint or an exported model is a directory
// of files on the machine that writes or reads it, and one atomic set of objects in the store.
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ArtifactNotFoundError, checkKey, type ArtifactStore, type ObjectInfo } from './artifact-store.js';

async function filesUnder(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await filesUnder(dir, r)));
    else if (e.isFile()) out.push(r);
  }
  return out.sort();
}

/** Uploads every file under `dir` as the objects of `prefix`, visible all at once when it returns. */
export async function uploadDir(store: ArtifactStore, prefix: string, dir: string): Promise<ObjectInfo[]> {
  const write = store.begin(prefix);
  try {
    for (const rel of await filesUnder(dir)) await write.put(rel, createReadStream(path.join(dir, rel)));
    return await write.commit();
  } catch (err) {
    await write.abort().catch(() => {});
    throw err;
  }
}

/**
 * Downloads the objects of `prefix` into `dir` (replaced if it exists). The files appear in `dir`
 * only once all of them arrived, so an interrupted download never looks like a complete one.
 */
export async function downloadPrefix(store: ArtifactStore, prefix: string, dir: string): Promise<ObjectInfo[]> {
  const base = checkKey(prefix);
  const objects = await store.list(base);
  if (objects.length === 0) throw new ArtifactNotFoundError(base);
  const tmp = `${dir}.part-${process.pid}`;
  await fs.rm(tmp, { recursive: true, force: true });
  try {
    for (const o of objects) {
      const file = path.join(tmp, ...o.key.slice(base.length + 1).split('/'));
      await fs.mkdir(path.dirname(file), { recursive: true });
      await pipeline(await store.get(o.key), createWriteStream(file));
    }
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(path.dirname(dir), { recursive: true });
    await fs.rename(tmp, dir);
    return objects;
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
