// Both artifact stores against real back ends: a directory, and a fresh PostgreSQL schema with
// the committed migrations. The same contract for each: streams in and out, nothing visible
// before commit, a commit replaces its prefix at once, delete by prefix, keys that cannot escape.
import { randomBytes, createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Readable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactKeyError, ArtifactNotFoundError, checkKey, type ArtifactStore } from '../../src/artifacts/artifact-store.js';
import { FsArtifactStore } from '../../src/artifacts/fs-store.js';
import { ModelFileCache } from '../../src/artifacts/model-cache.js';
import { CHUNK_BYTES, PostgresArtifactStore, READ_AHEAD } from '../../src/artifacts/postgres-store.js';
import { downloadPrefix, uploadDir } from '../../src/artifacts/transfer.js';
import { migrate } from '../../src/db/migrate.js';
import { parseDatabaseUrl } from '../../src/db/database-url.js';
import { pgPoolConfig, PG_TIMEOUTS } from '../../src/db/pg-pool.js';
import { openArtifactStore } from '../../src/artifacts/open-store.js';
import { dropSchema, PG_BASE, pgUrl, uniqueSchema } from '../db/test-databases.js';

const read = async (s: Readable) => {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
};
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-artifacts-'));
const schema = uniqueSchema('artifacts');

const stores: Record<'fs' | 'postgres', () => Promise<ArtifactStore>> = {
  fs: async () => new FsArtifactStore(path.join(tmp, 'store')),
  postgres: async () => {
    // Small chunks, so every test crosses chunk boundaries.
    return new PostgresArtifactStore(PG_BASE, schema, 64 * 1024);
  },
};

beforeAll(async () => {
  await migrate(pgUrl(schema));
});
afterAll(async () => {
  await dropSchema(schema);
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe.each(['fs', 'postgres'] as const)('%s artifact store', (kind) => {
  let store: ArtifactStore;
  beforeAll(async () => {
    store = await stores[kind]();
  });
  afterAll(async () => store?.close());

  it('streams an object in and out byte for byte, visible only after commit', async () => {
    const data = randomBytes(300_000 + 17);
    const w = store.begin('jobs/a/checkpoints/step-000001');
    // A stream of odd-sized pieces, as a file read would give.
    const pieces = [data.subarray(0, 1000), data.subarray(1000, 150_001), data.subarray(150_001)];
    const info = await w.put('weights.bin', Readable.from(pieces));
    await w.put('checkpoint.json', Buffer.from('{"step":1}'));
    expect(info).toMatchObject({ key: 'jobs/a/checkpoints/step-000001/weights.bin', sizeBytes: data.length });
    expect(await store.list('jobs/a')).toEqual([]);
    await expect(store.get(info.key)).rejects.toBeInstanceOf(ArtifactNotFoundError);
    await w.commit();
    const listed = await store.list('jobs/a');
    expect(listed.map((o) => o.key)).toEqual(['jobs/a/checkpoints/step-000001/checkpoint.json', 'jobs/a/checkpoints/step-000001/weights.bin']);
    expect(listed[1].sizeBytes).toBe(data.length);
    if (kind === 'postgres') expect(listed[1].sha256).toBe(sha(data));
    expect(sha(await read(await store.get(info.key)))).toBe(sha(data));
    expect(await store.head(info.key)).toMatchObject({ sizeBytes: data.length });
    // Folder semantics: "jobs/a" is not a prefix of "jobs/ab".
    const other = store.begin('jobs/ab');
    await other.put('x', Buffer.from('x'));
    await other.commit();
    expect((await store.list('jobs/a')).length).toBe(2);
  });

  it('a commit replaces the whole set under its prefix; an aborted write leaves nothing', async () => {
    const first = store.begin('models/m1');
    await first.put('model.onnx', Buffer.from('one'));
    await first.put('old-only.txt', Buffer.from('gone after the next commit'));
    await first.commit();
    const second = store.begin('models/m1');
    await second.put('model.onnx', Buffer.from('two'));
    expect((await read(await store.get('models/m1/model.onnx'))).toString()).toBe('one');
    await second.commit();
    expect((await store.list('models/m1')).map((o) => o.key)).toEqual(['models/m1/model.onnx']);
    expect((await read(await store.get('models/m1/model.onnx'))).toString()).toBe('two');

    const aborted = store.begin('models/m2');
    await aborted.put('model.onnx', randomBytes(200_000));
    await aborted.abort();
    expect(await store.list('models/m2')).toEqual([]);
    expect(await store.collectGarbage(0)).toBe(0);
  });

  it('deletes by prefix', async () => {
    const w = store.begin('jobs/del/checkpoints/s1');
    await w.put('a', Buffer.from('a'));
    await w.put('sub/b', Buffer.from('b'));
    await w.commit();
    expect(await store.delete('jobs/del')).toBe(2);
    expect(await store.list('jobs/del')).toEqual([]);
    expect(await store.delete('jobs/del')).toBe(0);
    await expect(store.get('jobs/del/checkpoints/s1/a')).rejects.toBeInstanceOf(ArtifactNotFoundError);
  });

  it('garbage-collects what a writer that died mid-write left staged', async () => {
    const w = store.begin('jobs/crashed');
    await w.put('weights.bin', randomBytes(100_000));
    // The writer dies here: no commit, no abort.
    expect(await store.collectGarbage(3_600_000)).toBe(0); // too young to be an orphan
    expect(await store.collectGarbage(0)).toBeGreaterThan(0);
    expect(await store.list('jobs/crashed')).toEqual([]);
  });

  it('uploads and downloads directories (checkpoints, exported models)', async () => {
    const src = path.join(tmp, `${kind}-src`);
    fs.mkdirSync(path.join(src, 'nested'), { recursive: true });
    fs.writeFileSync(path.join(src, 'checkpoint.json'), '{"ok":true}');
    fs.writeFileSync(path.join(src, 'nested', 'weights.bin'), randomBytes(70_000));
    await uploadDir(store, 'jobs/up/checkpoints/step-000002', src);
    const dst = path.join(tmp, `${kind}-dst`, 'step-000002');
    await downloadPrefix(store, 'jobs/up/checkpoints/step-000002', dst);
    expect(fs.readFileSync(path.join(dst, 'checkpoint.json'), 'utf8')).toBe('{"ok":true}');
    expect(fs.readFileSync(path.join(dst, 'nested', 'weights.bin')).equals(fs.readFileSync(path.join(src, 'nested', 'weights.bin')))).toBe(true);
    await expect(downloadPrefix(store, 'jobs/none', path.join(tmp, 'none'))).rejects.toBeInstanceOf(ArtifactNotFoundError);
    expect(fs.existsSync(path.join(tmp, 'none'))).toBe(false);
  });

  it('the model cache hands out only files whose sha256 matches the row', async () => {
    const bytes = randomBytes(50_000);
    const w = store.begin('models/cached');
    await w.put('model.onnx', bytes);
    await w.commit();
    const dir = path.join(tmp, `${kind}-cache`);
    const cache = new ModelFileCache(store, dir);
    const [a, b] = await Promise.all([cache.file('models/cached/model.onnx', sha(bytes)), cache.file('models/cached/model.onnx', sha(bytes))]);
    expect(a).toBe(b);
    expect(fs.readFileSync(a).equals(bytes)).toBe(true);
    // A wrong expectation (a row and a file that disagree): an error, and nothing cached.
    await expect(cache.file('models/cached/model.onnx', 'a'.repeat(64))).rejects.toThrow(/sha256/);
    expect(fs.existsSync(path.join(dir, `${'a'.repeat(64)}.onnx`))).toBe(false);
    if (kind === 'fs') {
      // Local files are read in place and checked each time: a changed file is refused.
      expect(a).toBe(path.join(tmp, 'store', 'models', 'cached', 'model.onnx'));
      fs.writeFileSync(a, 'rotten');
      await expect(cache.file('models/cached/model.onnx', sha(bytes))).rejects.toThrow(/sha256/);
    } else {
      // Downloads land in the cache named by sha256; a copy that rotted there is replaced by a
      // fresh download in the next process.
      expect(a).toBe(path.join(dir, `${sha(bytes)}.onnx`));
      fs.writeFileSync(a, 'rotten');
      const fresh = new ModelFileCache(store, dir);
      expect(fs.readFileSync(await fresh.file('models/cached/model.onnx', sha(bytes))).equals(bytes)).toBe(true);
    }
  });
});

describe('model cache of a remote store', () => {
  /** One model file of `size` random bytes per name, stored at models/<prefix>-<name>/model.onnx. */
  async function storeModels(store: ArtifactStore, prefix: string, names: string[], size: number) {
    const models = names.map((name) => ({ key: `models/${prefix}-${name}/model.onnx`, bytes: randomBytes(size) }));
    for (const m of models) {
      const w = store.begin(path.dirname(m.key));
      await w.put('model.onnx', m.bytes);
      await w.commit();
    }
    return models;
  }

  it('keeps within its byte budget by dropping the least recently used copies', async () => {
    const store = new PostgresArtifactStore(PG_BASE, schema, 64 * 1024);
    try {
      const models = await storeModels(store, 'lru', ['a', 'b', 'c'], 50_000);
      const dir = path.join(tmp, 'lru-cache');
      const cache = new ModelFileCache(store, dir, 120_000); // room for two of the three
      const pause = () => new Promise((r) => setTimeout(r, 20)); // distinct mtimes
      const [a, b, c] = models;
      const fileA = await cache.file(a.key, sha(a.bytes));
      await pause();
      await cache.file(b.key, sha(b.bytes));
      await pause();
      await cache.file(a.key, sha(a.bytes)); // a used again: b is now the oldest use
      await pause();
      await cache.file(c.key, sha(c.bytes));
      expect(fs.readdirSync(dir).sort()).toEqual([`${sha(a.bytes)}.onnx`, `${sha(c.bytes)}.onnx`].sort());
      // The dropped copy is fetched again on its next use.
      expect(fs.readFileSync(await cache.file(b.key, sha(b.bytes))).equals(b.bytes)).toBe(true);
      expect(fs.existsSync(fileA)).toBe(false); // a was now the oldest use
    } finally {
      await store.close();
    }
  });

  it("removes the copies of deleted models, except one used in the last minute; a copy again on the model's next use", async () => {
    const store = new PostgresArtifactStore(PG_BASE, schema, 64 * 1024);
    try {
      const models = await storeModels(store, 'drop', ['kept', 'gone', 'fresh'], 20_000);
      const dir = path.join(tmp, 'drop-cache');
      const cache = new ModelFileCache(store, dir);
      const [kept, gone, fresh] = models;
      const files = await Promise.all(models.map((m) => cache.file(m.key, sha(m.bytes))));
      const hourAgo = new Date(Date.now() - 3600_000);
      for (const f of files.slice(0, 2)) fs.utimesSync(f, hourAgo, hourAgo); // `fresh` was used just now
      fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a copy');
      let asked: string[] = [];
      const removed = await cache.dropDeleted(async (sha256s) => {
        asked = sha256s;
        return new Set([sha(kept.bytes)]); // only `kept` still has a model
      });
      expect(removed).toBe(1);
      expect(asked.sort()).toEqual(models.map((m) => sha(m.bytes)).sort());
      expect(fs.readdirSync(dir).sort()).toEqual([`${sha(kept.bytes)}.onnx`, `${sha(fresh.bytes)}.onnx`, 'notes.txt'].sort());
      // Nothing is asked of the database when the cache holds no copy.
      expect(await new ModelFileCache(store, path.join(tmp, 'empty-cache')).dropDeleted(() => Promise.reject(new Error('asked')))).toBe(0);
      // A model row with those bytes again (the same training run twice): downloaded and checked anew.
      expect(fs.readFileSync(await cache.file(gone.key, sha(gone.bytes))).equals(gone.bytes)).toBe(true);
    } finally {
      await store.close();
    }
  });
});

describe('postgres artifact store on a DATABASE_URL with libpq options', () => {
  it("keeps the URL's options and still writes into its schema", async () => {
    // `options` is how libpq URLs set a session's settings (and some hosted services' endpoint).
    // Until the fiftieth session it replaced the pool's own, which put the schema on the search
    // path, and every write went to `public` ("relation "ArtifactBlob" does not exist").
    const databaseUrl = `${pgUrl(schema)}&options=${encodeURIComponent('-c statement_timeout=4321')}`;
    const store = openArtifactStore({ artifactStore: 'postgres', artifactsDir: tmp, databaseUrl, databaseTimeouts: PG_TIMEOUTS });
    try {
      const w = store.begin('jobs/options/checkpoints/1');
      await w.put('weights.bin', Buffer.from('w'));
      await w.commit();
    } finally {
      await store.close();
    }
    const target = parseDatabaseUrl(databaseUrl);
    if (target.provider !== 'postgres') throw new Error('expected a PostgreSQL target');
    const pool = new pg.Pool(pgPoolConfig(target.connectionString, 1, PG_TIMEOUTS));
    try {
      const keys = await pool.query<{ key: string }>(`SELECT key FROM "${schema}"."ArtifactObject" WHERE key LIKE 'jobs/options/%'`);
      expect(keys.rows.map((r) => r.key)).toEqual(['jobs/options/checkpoints/1/weights.bin']);
      expect((await pool.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0].statement_timeout).toBe('4321ms');
    } finally {
      await pool.end();
    }
  });
});

describe('artifact keys', () => {
  it('cannot leave the store', () => {
    expect(checkKey('/jobs/a/')).toBe('jobs/a');
    for (const bad of ['', '../x', 'a/../b', 'a//b', 'a/.staging/x', '.hidden', 'a\\b', 'a/b c', 'x'.repeat(600)]) {
      expect(() => checkKey(bad), bad).toThrow(ArtifactKeyError);
    }
  });
});

describe('postgres artifact store memory', () => {
  it('streams a 128 MB object in and out without holding it in memory', async () => {
    const store = new PostgresArtifactStore(PG_BASE, schema);
    try {
      const total = 128 << 20;
      const piece = randomBytes(256 << 10);
      const hash = createHash('sha256');
      // Live memory only. One collection is not enough: V8 frees dead ArrayBuffers' memory on a
      // concurrent sweeper after it, and on a loaded machine that lags (one run counted 54 MB of
      // such garbage). The next collection first waits for the last one's sweep.
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      const live = () => {
        gc();
        gc();
        return process.memoryUsage().arrayBuffers;
      };
      let peak = 0;
      let calls = 0;
      const sample = () => {
        if (calls++ % 16 === 0) peak = Math.max(peak, live());
      };
      const base = live();
      async function* source() {
        for (let sent = 0; sent < total; sent += piece.length) {
          hash.update(piece);
          sample();
          yield piece;
        }
      }
      const w = store.begin('big/one');
      const info = await w.put('weights.bin', Readable.from(source()));
      await w.commit();
      expect(info.sizeBytes).toBe(total);
      expect(info.sha256).toBe(hash.digest('hex'));
      // Writing holds the chunk being cut and inserted (measured: 1.0 MiB above the start).
      expect(peak - base).toBeLessThan(2 * CHUNK_BYTES + piece.length);
      peak = 0;
      let n = 0;
      for await (const c of await store.get('big/one/weights.bin')) {
        n += (c as Buffer).length;
        sample();
      }
      expect(n).toBe(total);
      // Reading holds one query's chunks (measured: 4.0 MiB), never the object.
      expect(peak - base).toBeLessThan((READ_AHEAD + 2) * CHUNK_BYTES);
    } finally {
      await store.close();
    }
  }, 120_000);
});
