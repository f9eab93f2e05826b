// For the benches that start the service: a free port, and the wait for it to answer /readyz.
import net from 'node:net';

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `base`/readyz every 200 ms until it answers 2xx; false after `tries` polls. */
export async function waitReady(base: string, tries = 150): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    const ok = await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}
