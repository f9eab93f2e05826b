// `qatserve api` on SIGTERM: stops accepting connections, finishes the request in flight, exits 0.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertBuilt, CLI, tinyJob } from './worker-process.js';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe('qatserve api shutdown', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-api-stop-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finishes the request in flight after SIGTERM and refuses new connections', async () => {
    assertBuilt();
    const port = await freePort();
    const proc = spawn(process.execPath, [CLI, 'api'], {
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        DATA_DIR: dir,
        DATABASE_URL: `file:${dir}/db.sqlite`,
        QUEUE_PREFIX: `qs-stop-${process.pid}`,
        LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    for (let i = 0; i < 100; i++) {
      if (
        await fetch(`http://127.0.0.1:${port}/readyz`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // A POST whose body arrives in two halves, with SIGTERM in between.
    const body = JSON.stringify(tinyJob(4));
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/jobs',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, 20));
      const finishAfterSigterm = async () => {
        proc.kill('SIGTERM');
        await new Promise((r) => setTimeout(r, 500));
        const refused = await fetch(`http://127.0.0.1:${port}/healthz`).then(
          () => false,
          () => true,
        );
        req.end(body.slice(20));
        if (!refused) reject(new Error('a new connection was accepted after SIGTERM'));
      };
      setTimeout(() => void finishAfterSigterm().catch(reject), 300);
    });
    const res = await response;
    expect(res.status, res.body).toBe(201);
    expect(JSON.parse(res.body).status).toBe('queued');
    expect(await exited).toBe(0);
  });
});
