// ARTIFACT_STORE=postgres: artifacts in the deployment's own PostgreSQL, so machines that share
// nothing but the database and Redis share models and checkpoints too.
//
// An object's bytes are a blob: an ArtifactBlob row and ArtifactChunk rows of at most CHUNK_BYTES
// each, inserted as the upload streams in. Reads fetch a few chunks at a time. Neither side ever
// holds a whole object in memory, so checkpoints of any size pass through a small, fixed buffer.
// Objects (ArtifactObject: key -> blob, size, sha256) are inserted by commit() in one transaction
// together with the removal of the set they replace: that transaction is the atomic switch.
// Blobs no object names (a writer died mid-upload) are removed by collectGarbage().
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import pg from 'pg';
import { PG_TIMEOUTS, pgPoolConfig, type PgTimeouts } from '../db/pg-pool.js';
import { ArtifactCorruptError, ArtifactNotFoundError, checkKey, joinKey, type ArtifactStore, type ArtifactWrite, type ObjectInfo } from './artifact-store.js';

/** 1 MiB: big enough that a 30 MB checkpoint is 30 inserts, small enough to stay off the heap's radar. */
export const CHUNK_BYTES = 1 << 20;
/** Chunks fetched per query when reading. */
export const READ_AHEAD = 4;

interface ObjectRow {
  key: string;
  blobId: string;
  sizeBytes: number;
  sha256: string;
}

export class PostgresArtifactStore implements ArtifactStore {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  /**
   * The tables, named with their schema: a search path set at connection (libpq's `options`) is
   * refused by PgBouncer ("unsupported startup parameter: options"), the usual pooler in front of
   * a PostgreSQL that many machines share.
   */
  private readonly tables: { blob: string; chunk: string; object: string };

  constructor(
    connectionString: string,
    schema: string,
    private readonly chunkBytes = CHUNK_BYTES,
    timeouts: PgTimeouts = PG_TIMEOUTS,
  ) {
    this.pool = new pg.Pool(pgPoolConfig(connectionString, 4, timeouts));
    const table = (name: string) => `"${schema}"."${name}"`;
    this.tables = { blob: table('ArtifactBlob'), chunk: table('ArtifactChunk'), object: table('ArtifactObject') };
    // An idle client's connection dropping (server restart) must not crash the process.
    this.pool.on('error', () => {});
  }

  begin(prefix: string): ArtifactWrite {
    const dest = checkKey(prefix);
    const staged: Array<ObjectInfo & { blobId: string; sha256: string }> = [];
    const blobs: string[] = [];
    let done = false;
    return {
      put: async (name, body) => {
        if (done) throw new Error(`write to ${dest} already committed or aborted`);
        const key = joinKey(dest, name);
        const blobId = randomUUID();
        await this.pool.query(`INSERT INTO ${this.tables.blob} (id) VALUES ($1)`, [blobId]);
        blobs.push(blobId);
        const hash = createHash('sha256');
        let size = 0;
        let seq = 0;
        const source = body instanceof Uint8Array ? [Buffer.from(body.buffer, body.byteOffset, body.byteLength)] : (body as AsyncIterable<Buffer>);
        for await (const chunk of rechunk(source, this.chunkBytes)) {
          hash.update(chunk);
          size += chunk.length;
          await this.pool.query(`INSERT INTO ${this.tables.chunk} ("blobId", seq, data) VALUES ($1, $2, $3)`, [blobId, seq++, chunk]);
        }
        const info = { key, blobId, sizeBytes: size, sha256: hash.digest('hex') };
        staged.push(info);
        return { key, sizeBytes: size, sha256: info.sha256 };
      },
      commit: async () => {
        if (done) throw new Error(`write to ${dest} already committed or aborted`);
        done = true;
        await this.transaction(async (c) => {
          const replaced = await this.removeObjects(c, dest);
          for (const o of staged) {
            await c.query(`INSERT INTO ${this.tables.object} (key, "blobId", "sizeBytes", sha256) VALUES ($1, $2, $3, $4)`, [
              o.key,
              o.blobId,
              o.sizeBytes,
              o.sha256,
            ]);
          }
          if (replaced.length) await c.query(`DELETE FROM ${this.tables.blob} WHERE id = ANY($1)`, [replaced]);
        });
        return staged.map(({ key, sizeBytes, sha256 }) => ({ key, sizeBytes, sha256 }));
      },
      abort: async () => {
        done = true;
        if (blobs.length) await this.pool.query(`DELETE FROM ${this.tables.blob} WHERE id = ANY($1)`, [blobs]);
        blobs.length = 0;
      },
    };
  }

  async get(key: string): Promise<Readable> {
    const k = checkKey(key);
    const { rows } = await this.pool.query<ObjectRow>(`SELECT key, "blobId", "sizeBytes", sha256 FROM ${this.tables.object} WHERE key = $1`, [k]);
    const obj = rows[0];
    if (!obj) throw new ArtifactNotFoundError(k);
    const { pool, tables } = this;
    // Verified as it streams: a reader gets an error, not wrong bytes, if chunks went missing.
    async function* chunks() {
      const hash = createHash('sha256');
      let size = 0;
      for (let seq = 0; ;) {
        const { rows: part } = await pool.query<{ seq: number; data: Buffer }>(
          `SELECT seq, data FROM ${tables.chunk} WHERE "blobId" = $1 AND seq >= $2 ORDER BY seq LIMIT $3`,
          [obj.blobId, seq, READ_AHEAD],
        );
        for (const r of part) {
          if (r.seq !== seq) throw new ArtifactCorruptError(k, `chunk ${seq} is missing`);
          hash.update(r.data);
          size += r.data.length;
          seq++;
          yield r.data;
        }
        if (part.length < READ_AHEAD) break;
      }
      if (size !== obj.sizeBytes) throw new ArtifactCorruptError(k, `${size} bytes read, ${obj.sizeBytes} recorded (deleted while read?)`);
      if (hash.digest('hex') !== obj.sha256) throw new ArtifactCorruptError(k, 'sha256 differs from the recorded one');
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const { rows } = await this.pool.query<ObjectRow>(`SELECT key, "sizeBytes", sha256 FROM ${this.tables.object} WHERE key = $1`, [checkKey(key)]);
    return rows[0] ? { key: rows[0].key, sizeBytes: rows[0].sizeBytes, sha256: rows[0].sha256 } : null;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const { rows } = await this.pool.query<ObjectRow>(
      `SELECT key, "sizeBytes", sha256 FROM ${this.tables.object} WHERE starts_with(key, $1) ORDER BY key COLLATE "C"`,
      [`${checkKey(prefix)}/`],
    );
    return rows.map((r) => ({ key: r.key, sizeBytes: r.sizeBytes, sha256: r.sha256 }));
  }

  async delete(prefix: string): Promise<number> {
    const dest = checkKey(prefix);
    return this.transaction(async (c) => {
      const blobs = await this.removeObjects(c, dest);
      if (blobs.length) await c.query(`DELETE FROM ${this.tables.blob} WHERE id = ANY($1)`, [blobs]);
      return blobs.length;
    });
  }

  async collectGarbage(olderThanMs: number): Promise<number> {
    const { rowCount } = await this.pool.query(
      `DELETE FROM ${this.tables.blob} b WHERE b."createdAt" < now() - make_interval(secs => $1)
         AND NOT EXISTS (SELECT 1 FROM ${this.tables.object} o WHERE o."blobId" = b.id)`,
      [olderThanMs / 1000],
    );
    return rowCount ?? 0;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** Deletes the objects under `prefix` (locking them first, so two commits of one prefix serialise); returns their blobs. */
  private async removeObjects(c: pg.PoolClient, prefix: string): Promise<string[]> {
    const { rows } = await c.query<{ blobId: string }>(
      `DELETE FROM ${this.tables.object} WHERE key IN (SELECT key FROM ${this.tables.object} WHERE starts_with(key, $1) FOR UPDATE) RETURNING "blobId"`,
      [`${prefix}/`],
    );
    return rows.map((r) => r.blobId);
  }

  private async transaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    // A client whose ROLLBACK failed (its connection died, or a query timed out) leaves the pool.
    let broken = false;
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      broken = await c.query('ROLLBACK').then(
        () => false,
        () => true,
      );
      throw err;
    } finally {
      c.release(broken);
    }
  }
}

/** Re-cuts a byte stream into pieces of exactly `size` bytes (the last may be shorter). */
export async function* rechunk(source: AsyncIterable<Buffer> | Iterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const raw of source) {
    let buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
    while (buf.length > 0) {
      const take = Math.min(size - have, buf.length);
      parts.push(buf.subarray(0, take));
      have += take;
      buf = buf.subarray(take);
      if (have === size) {
        yield Buffer.concat(parts, have);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0) yield Buffer.concat(parts, have);
}
