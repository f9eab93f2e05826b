// A TCP proxy in front of PostgreSQL or Redis that fails the way a network does. cut(): a partition, where
// packets are lost rather than refused: connections stay open, nothing passes either way, no error
// reaches either end, and new connections are accepted but never answered. failover(): the server
// that was cut off is gone for good (its connections stay silent for ever) and new connections
// reach a live one, as when DATABASE_URL's host moves to a standby. moveTo(): a name moved to
// another server while the first runs on: connections made before stay on it, new ones reach the
// other (a managed Redis's failover that keeps the demoted primary as a replica).
import net from 'node:net';

export class PartitionProxy {
  private readonly pairs: Array<[net.Socket, net.Socket]> = [];
  private readonly held: net.Socket[] = [];
  private readonly dead: net.Socket[] = [];
  private isCut = false;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private upstreamPort: number,
  ) {}

  /** A proxy on a free loopback port to the server at 127.0.0.1:`upstreamPort`. */
  static async start(upstreamPort: number): Promise<PartitionProxy> {
    let proxy: PartitionProxy | undefined;
    const server = net.createServer((client) => proxy!.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new PartitionProxy(server, (server.address() as net.AddressInfo).port, upstreamPort);
    return proxy;
  }

  /** `url` (a server's URL on 127.0.0.1) with its port moved to this proxy. */
  through(url: string): string {
    const u = new URL(url);
    u.port = String(this.port);
    return u.toString();
  }

  cut(): void {
    this.isCut = true;
    for (const [a, b] of this.pairs) {
      a.unpipe(b);
      b.unpipe(a);
      a.pause();
      b.pause();
    }
  }

  failover(): void {
    this.isCut = false;
    this.dead.push(...this.pairs.flat());
    this.pairs.length = 0;
    for (const client of this.held.splice(0)) this.link(client);
  }

  moveTo(upstreamPort: number): void {
    this.upstreamPort = upstreamPort;
  }

  async close(): Promise<void> {
    for (const s of [...this.pairs.flat(), ...this.held, ...this.dead]) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => {});
    if (this.isCut) {
      client.pause();
      this.held.push(client);
    } else {
      this.link(client);
    }
  }

  private link(client: net.Socket): void {
    const server = net.connect(this.upstreamPort, '127.0.0.1');
    server.on('error', () => client.destroy());
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
    client.pipe(server);
    server.pipe(client);
    client.resume();
    this.pairs.push([client, server]);
  }
}
