// A DATA_DIR the process cannot write (a Docker volume owned by another user, a read-only mount,
// a path through a file): every command exits 1 with one line naming the place and the setting.
// Before, the SQLite cases printed better-sqlite3's "unable to open database file" with its
// stack, and an API on PostgreSQL started "ready" and then never served, saying each model file
// was "missing, unreadable or does not match its sha256 (ENOENT)". These run as root in CI, where
// permissions do not stop a write: a path through a file stands in for them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../api/api-process.js';
import { dropSchema, pgUrl, uniqueSchema } from '../db/test-databases.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-unwritable-'));
const aFile = path.join(root, 'a-file');
fs.writeFileSync(aFile, 'not a directory');
const schema = uniqueSchema('unwritable');

afterAll(async () => {
  fs.rmSync(root, { recursive: true, force: true });
  await dropSchema(schema);
});

function expectOneLine(r: { code: number; stderr: string }, line: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr.trim().split('\n').at(-1)).toMatch(line);
  expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
}

describe('a DATA_DIR that cannot be written', () => {
  const env = { DATA_DIR: path.join(aFile, 'data'), PORT: '0', QUEUE_PREFIX: `unwritable-${process.pid}` };
  const sqliteLine = new RegExp(
    `^the SQLite database ${path.join(aFile, 'data', 'qatserve.db')} cannot be created or written \\(.+\\): the file and its directory must be writable by this user .*; set DATA_DIR`,
  );

  for (const command of ['migrate', 'api', 'worker', 'serve']) {
    it(`makes \`qatserve ${command}\` on SQLite exit 1 saying where the database cannot be written`, async () => {
      expectOneLine(await runCli([command], env), sqliteLine);
    });
  }

  it('says the same of a DATABASE_URL naming a directory', async () => {
    expectOneLine(
      await runCli(['migrate'], { DATABASE_URL: `file:${root}` }),
      new RegExp(`^the SQLite database ${root} cannot be created or written \\(unable to open database file\\)`),
    );
  });

  it('makes `qatserve api` on PostgreSQL exit 1 naming the model cache it cannot write', async () => {
    const r = await runCli(['api'], { ...env, DATABASE_URL: pgUrl(schema) });
    expectOneLine(
      r,
      new RegExp(
        `^the model cache ${path.join(aFile, 'data', 'cache', 'models')} cannot be written \\(.+\\): the API copies each model there from the postgres store to serve it; set DATA_DIR`,
      ),
    );
  });
});
