// A port that is taken, as when `npm start` runs a second time: `qatserve api` and `qatserve
// serve` exit 1 with one line saying which setting to change, start no worker, and leave the
// first server answering.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenError } from '../../src/api/server.js';
import { SettingsError } from '../../src/config/settings.js';
import { assertBuilt, CLI } from './worker-process.js';

function run(cwd: string, command: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawn(process.execPath, [CLI, command], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

describe('a port already in use', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-port-'));
  const sockets = new Set<net.Socket>();
  const taken = net.createServer((s) => {
    sockets.add(s.once('close', () => sockets.delete(s)));
    s.end('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nfirst');
  });
  let port = 0;
  beforeAll(async () => {
    assertBuilt();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    port = (taken.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => taken.close(r));
    fs.rmSync(cwd, { recursive: true, force: true });
  });

  for (const command of ['api', 'serve']) {
    it(`makes \`qatserve ${command}\` exit 1 with one line naming PORT, and no worker`, async () => {
      const r = await run(cwd, command, { PORT: String(port), HOST: '127.0.0.1', QUEUE_PREFIX: `port-${process.pid}`, LOG_LEVEL: 'info' });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.trim().split('\n').at(-1)).toBe(
        `cannot listen on 127.0.0.1:${port}: the port is in use (another qatserve?); stop that process or set PORT to a free port`,
      );
      expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
      expect(r.stdout).not.toContain('"role":"worker"'); // serve starts its worker only once it listens
      // The process that holds the port still answers.
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('first');
    });
  }

  it('names the setting for the other socket errors a setting causes, and passes the rest on', () => {
    const at = { host: '10.9.8.7', port: 80 };
    const err = (code: string) => Object.assign(new Error(code), { code });
    expect(listenError(err('EACCES'), at)).toEqual(
      new SettingsError('cannot listen on 10.9.8.7:80: no permission (ports below 1024 need privileges); set PORT to 1024 or above'),
    );
    expect((listenError(err('EADDRNOTAVAIL'), at) as Error).message).toMatch(/HOST is not an address of this machine/);
    // A HOST name that does not resolve: getaddrinfo's error, a stack before.
    expect(listenError(Object.assign(new Error('getaddrinfo ENOTFOUND web.invalid'), { code: 'ENOTFOUND' }), { host: 'web.invalid', port: 3000 })).toEqual(
      new SettingsError(
        'cannot listen on web.invalid:3000: HOST does not resolve to an address (getaddrinfo ENOTFOUND web.invalid); set HOST to an address of this machine, or 0.0.0.0 for all',
      ),
    );
    const other = err('EMFILE');
    expect(listenError(other, at)).toBe(other);
  });
});
