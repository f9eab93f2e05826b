// Cancel messages over real Redis pub/sub, scoped by queue prefix, and across a Redis restart or
// a failover.
import net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { cancelPublisher, subscribeCancels } from '../../src/queue/cancel-bus.js';
import { REDIS_TIMEOUT_MIN_MS } from '../../src/config/settings.js';
import { PartitionProxy } from '../integration/partition-proxy.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('cancel bus', () => {
  const pub = new Redis(url);
  afterAll(() => pub.disconnect());

  it('delivers job ids to subscribers of the same prefix only', async () => {
    const prefix = `qs-cancel-${process.pid}`;
    const got: string[] = [];
    const other: string[] = [];
    const a = await subscribeCancels(url, prefix, (id) => got.push(id), REDIS_TIMEOUT_MIN_MS);
    const b = await subscribeCancels(url, `${prefix}-other`, (id) => other.push(id), REDIS_TIMEOUT_MIN_MS);
    await cancelPublisher(pub, prefix).publish('job-1');
    await cancelPublisher(pub, prefix).publish('job-2');
    const until = Date.now() + 2000;
    while (got.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await a.close();
    await b.close();
    expect(got).toEqual(['job-1', 'job-2']);
    expect(other).toEqual([]);
  });

  it('survives Redis going away and coming back: no unhandled error, later cancels still arrive', async () => {
    // A proxy in front of the real Redis stands for its restart: its sockets are cut and for a
    // while nothing listens on its port.
    const sockets = new Set<net.Socket>();
    const proxy = () =>
      net.createServer((client) => {
        const upstream = net.connect(6379, '127.0.0.1');
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => {});
          s.on('close', () => sockets.delete(s));
        }
        client.pipe(upstream).pipe(client);
      });
    let server = proxy().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as net.AddressInfo).port;
    const errors = vi.spyOn(console, 'error');
    const prefix = `qs-cancel-restart-${process.pid}`;
    const got: string[] = [];
    const sub = await subscribeCancels(`redis://127.0.0.1:${port}`, prefix, (id) => got.push(id), REDIS_TIMEOUT_MIN_MS);
    try {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
      await new Promise((r) => setTimeout(r, 500)); // reconnect attempts meet a closed port
      server = proxy().listen(port, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const until = Date.now() + 5000;
      while (got.length === 0 && Date.now() < until) {
        await cancelPublisher(pub, prefix).publish('job-after-restart');
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(got[0]).toBe('job-after-restart');
      expect(errors.mock.calls.filter((c) => String(c[0]).includes('Unhandled error event'))).toEqual([]);
    } finally {
      errors.mockRestore();
      await sub.close();
      server.close();
      for (const s of sockets) s.destroy();
    }
  });

  it('subscribes once Redis answers when it does not yet: the subscription waits instead of failing', async () => {
    // A worker subscribes just after Redis answered its start-up PING; Redis gone again by then
    // made the subscription (an explicit connect) fail with "Connection is closed.", and the worker exit.
    const listener = net.createServer();
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    const port = (listener.address() as net.AddressInfo).port;
    await new Promise<void>((r) => listener.close(() => r())); // nothing listens there now
    const prefix = `qs-cancel-late-${process.pid}`;
    const got: string[] = [];
    const subscribing = subscribeCancels(`redis://127.0.0.1:${port}`, prefix, (id) => got.push(id), REDIS_TIMEOUT_MIN_MS);
    subscribing.catch(() => {}); // awaited below, once a server listens
    await new Promise((r) => setTimeout(r, 700)); // several refused attempts
    const sockets = new Set<net.Socket>();
    const server = net.createServer((client) => {
      const upstream = net.connect(Number(new URL(url).port || 6379), '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    try {
      const sub = await subscribing;
      try {
        await expect
          .poll(
            async () => {
              await cancelPublisher(pub, prefix).publish('job-late');
              return got.length;
            },
            { timeout: 5000, interval: 100 },
          )
          .toBeGreaterThan(0);
        expect(got[0]).toBe('job-late');
      } finally {
        await sub.close();
      }
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });

  it('subscribes again after a failover: the connection that went silent is dropped within REDIS_TIMEOUT_MS', async () => {
    // Before: a subscribed connection sends nothing, so one whose server was gone was never noticed
    // and no cancel arrived over pub/sub again for as long as the worker ran.
    const proxy = await PartitionProxy.start(Number(new URL(url).port || 6379));
    const prefix = `qs-cancel-failover-${process.pid}`;
    const got: string[] = [];
    const sub = await subscribeCancels(proxy.through(url), prefix, (id) => got.push(id), REDIS_TIMEOUT_MIN_MS);
    try {
      proxy.cut();
      proxy.failover();
      await expect
        .poll(
          async () => {
            await cancelPublisher(pub, prefix).publish('job-after-failover');
            return got.length;
          },
          { timeout: 3 * REDIS_TIMEOUT_MIN_MS, interval: 500 },
        )
        .toBeGreaterThan(0);
      expect(got[0]).toBe('job-after-failover');
    } finally {
      await sub.close();
      await proxy.close();
    }
  }, 60_000);
});
