// Connection caps against a listening app and raw sockets: a client holding its
// MAX_CONNECTIONS_PER_CLIENT sockets gets 503 on the next one and its request is not run; a
// trusted proxy's address is not capped per client, MAX_CONNECTIONS still caps the process.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CappedCounts } from '../../src/api/capped-counts.js';
import { clientOf } from '../../src/api/connection-limits.js';
import { bodyBytes } from '../../src/api/plugins/body-budget.js';
import { defaultMaxConnections } from '../../src/config/settings.js';
import { startHarness, tinySynthetic, waitReady, type Harness } from './api-harness.js';

describe('clientOf', () => {
  it('counts IPv4 by address and IPv6 by its /64', () => {
    expect(clientOf('203.0.113.7')).toBe('203.0.113.7');
    expect(clientOf('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientOf('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(clientOf('2001:db8:1:2::1')).toBe(clientOf('2001:0db8:0001:0002:ffff::'));
    expect(clientOf('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientOf('2001:db8:0:1::1')).not.toBe(clientOf('2001:db8::1'));
    expect(clientOf('::1')).toBe('0:0:0:0::/64');
    expect(clientOf('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});

describe('CappedCounts', () => {
  it('caps per client and in all, and gives a slot back once', () => {
    const counts = new CappedCounts(2, 3);
    const a1 = counts.take('a');
    const a2 = counts.take('a');
    expect(counts.take('a')).toBe('client');
    expect(typeof counts.take(undefined)).toBe('function'); // exempt: only the total counts it
    expect(counts.take('b')).toBe('total');
    expect(counts.refused).toEqual({ client: 1, total: 1 });
    if (typeof a1 !== 'function' || typeof a2 !== 'function') throw new Error('expected slots');
    a1();
    a1();
    expect(counts.open).toBe(2);
    expect(typeof counts.take('b')).toBe('function');
  });

  it('counts amounts (bytes of bodies): what would pass a cap is refused, unless its holder holds nothing', () => {
    const bytes = new CappedCounts(10, 16);
    const a = bytes.take('a', 8);
    expect(bytes.take('a', 3)).toBe('client');
    expect(bytes.heldBy('a')).toBe(8);
    const b = bytes.take('b', 8);
    expect(bytes.take('c', 1)).toBe('total');
    if (typeof a !== 'function' || typeof b !== 'function') throw new Error('expected slots');
    a();
    a();
    expect(bytes.open).toBe(8);
    b();
    // One body larger than both caps still gets in by itself, and nothing beside it.
    expect(typeof bytes.take('a', 20)).toBe('function');
    expect(bytes.take('a', 1)).toBe('total');
    expect(bytes.take('b', 1)).toBe('total');
  });

  it('sizes a body by its Content-Length, a chunked one at its route limit, and nothing else', () => {
    expect(bodyBytes({ 'content-length': '5000' }, 10_000)).toBe(5000);
    expect(bodyBytes({ 'transfer-encoding': 'chunked' }, 10_000)).toBe(10_000);
    expect(bodyBytes({}, 10_000)).toBe(0);
    // Fastify answers these itself (413, 400) without reading a byte.
    expect(bodyBytes({ 'content-length': '10001' }, 10_000)).toBe(0);
    expect(bodyBytes({ 'content-length': 'abc' }, 10_000)).toBe(0);
  });

  it('takes the open-file limit less a reserve as the default total', () => {
    expect(defaultMaxConnections(1024)).toBe(512);
    expect(defaultMaxConnections(1048576)).toBe(1047552);
    expect(defaultMaxConnections(null)).toBe(0);
  });
});

/** Connects and waits until the server has counted the socket (its open gauge says so). */
async function connect(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

/** Sends raw HTTP on a new socket and reads until the server closes it or answers in full. */
async function send(port: number, request: string): Promise<{ status: number; headers: string; body: string }> {
  const socket = await connect(port);
  socket.write(request);
  const text = await new Promise<string>((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`no answer: ${got}`)), 5000);
    socket.on('data', (d: Buffer) => {
      got += d.toString();
      const [head = '', body = ''] = got.split('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(head);
      if (length && Buffer.byteLength(body) >= Number(length[1])) {
        clearTimeout(timer);
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
  const [head = '', body = ''] = text.split('\r\n\r\n');
  return { status: Number(head.split(' ')[1]), headers: head, body };
}

const postJob = (body: string) =>
  `POST /v1/jobs HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;

async function openSockets(h: Harness): Promise<number> {
  const res = await h.app.inject({ method: 'GET', url: '/metrics' });
  return Number(/^qatserve_http_connections_open (\d+)/m.exec(res.body)?.[1]);
}

async function until(what: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('connection caps on a listening API', () => {
  let h: Harness | undefined;
  const held: net.Socket[] = [];
  afterEach(async () => {
    for (const s of held.splice(0)) s.destroy();
    await h?.close();
    h = undefined;
  });

  async function listen(env: Record<string, string>): Promise<number> {
    h = await startHarness('sqlite', env);
    await waitReady(h);
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    return (h.app.server.address() as net.AddressInfo).port;
  }

  it('answers a client past MAX_CONNECTIONS_PER_CLIENT 503 without running its request', async () => {
    const port = await listen({ MAX_CONNECTIONS_PER_CLIENT: '3' });
    for (let i = 0; i < 3; i++) held.push(await connect(port));
    await until(async () => (await openSockets(h!)) === 3);

    const refused = await send(port, postJob(JSON.stringify(tinySynthetic)));
    expect(refused.status).toBe(503);
    expect(refused.headers).toMatch(/retry-after: 5/i);
    expect(JSON.parse(refused.body).error.code).toBe('TOO_MANY_CONNECTIONS');
    expect(JSON.parse(refused.body).error.message).toContain('MAX_CONNECTIONS_PER_CLIENT');

    // One socket closed: the client may connect again, and its request runs.
    held.pop()!.destroy();
    await until(async () => (await openSockets(h!)) === 2);
    const created = await send(port, postJob(JSON.stringify(tinySynthetic)));
    expect(created.status).toBe(201);
    // Only that one: the refused socket's POST was never parsed.
    const jobs = await h!.app.inject({ method: 'GET', url: '/v1/jobs' });
    expect(jobs.json().jobs.map((j: { id: string }) => j.id)).toEqual([JSON.parse(created.body).id]);
    const metrics = (await h!.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/^qatserve_http_connections_refused_total\{reason="client"\} 1$/m);
  });

  it('does not cap a trusted proxy per client, and MAX_CONNECTIONS caps the process', async () => {
    const port = await listen({ MAX_CONNECTIONS_PER_CLIENT: '2', MAX_CONNECTIONS: '4', TRUST_PROXY: 'loopback' });
    for (let i = 0; i < 4; i++) held.push(await connect(port));
    await until(async () => (await openSockets(h!)) === 4);
    const refused = await send(port, 'GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n');
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body).error.code).toBe('CONNECTIONS_FULL');
  });
});
