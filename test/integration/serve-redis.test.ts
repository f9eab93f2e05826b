// `qatserve serve` with REDIS_URL unset and nothing on 127.0.0.1:6379 starts redis-server from
// PATH as a child (and stops it on exit), or exits with a message saying how to get Redis.
// A private network namespace (`unshare -n`, needs root or user namespaces) gives a loopback
// where port 6379 is free even though the machine's own Redis runs.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertBuilt, CLI } from './worker-process.js';

const SCRIPT = path.resolve('test/integration/fixtures/serve-in-netns.mjs');

function inNetns(mode: string, cwd: string) {
  const r = spawnSync(
    'unshare',
    ['-n', 'sh', '-c', 'ip link set lo up 2>/dev/null || ifconfig lo up; exec "$0" "$@"', process.execPath, SCRIPT, CLI, cwd, mode],
    { encoding: 'utf8', timeout: 60_000 },
  );
  if (r.status !== 0) throw new Error(`unshare failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe('serve without a reachable Redis', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-netns-'));
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  it('starts redis-server from PATH as a child, is ready, and stops it on SIGTERM', () => {
    assertBuilt();
    const r = inNetns('with-redis', cwd);
    expect(r.ready, r.log).toEqual({ status: 'ready', checks: { database: 'ok', redis: 'ok', queue: 'ok', worker: 'ok', model: 'none' } });
    expect(r.redisChild, r.log).toBe(true);
    expect(r.log).toContain('started redis-server on 127.0.0.1:6379');
    expect(r.exitCode).toBe(0);
    expect(r.redisAliveAfterExit).toBe(false);
  });

  it('leaves no redis-server behind when stopped while it waits for PostgreSQL', () => {
    // Before, serve exited at once (a stack or a line) and its redis-server child ran on.
    const r = inNetns('no-postgres', cwd);
    expect(r.redisChild, r.log).toBe(true);
    expect(r.log).toContain('PostgreSQL at 127.0.0.1:5432 cannot be reached (connect ECONNREFUSED 127.0.0.1:5432)');
    expect(r.exitCode, r.log).toBe(1);
    expect(r.redisAliveAfterExit).toBe(false);
  });

  it('exits with a message on how to get Redis when redis-server is not on PATH', () => {
    const r = inNetns('no-redis', cwd);
    expect(r.exitCode).toBe(1);
    expect(r.log).toMatch(/needs Redis[\s\S]*apt-get install redis-server[\s\S]*REDIS_URL/);
  });
});
