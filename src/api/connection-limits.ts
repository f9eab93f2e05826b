// Connections are admitted before the HTTP parser sees them. An idle socket holds a file descriptor
// until REQUEST_TIMEOUT_MS closes it, and at the process's open-file limit the API accepts no one:
// 30,000 idle sockets from one client made every request fail for 30 s (measured against `qatserve
// serve`, 20,000 descriptors). A client gets MAX_CONNECTIONS_PER_CLIENT sockets, the process
// MAX_CONNECTIONS; a socket past either is answered 503 and closed without its request being read.
import type { Server, Socket } from 'node:net';
import { isIPv6 } from 'node:net';
import { CappedCounts, type Refusal } from './capped-counts.js';
import { errorBody } from './error-body.js';

/** Seconds a refused client is told to wait: idle sockets close within REQUEST_TIMEOUT_MS. */
export const CONNECTION_RETRY_AFTER_S = 5;
/** How long a refused socket may linger while its answer reaches the client. */
const REFUSED_LINGER_MS = 1000;

/**
 * Whom a socket counts against: its IPv4 address, or the /64 of an IPv6 one (an IPv6 host is
 * handed a whole /64 and can pick a new address in it for every socket).
 */
export function clientOf(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head = '', tail] = address.split('%')[0].split('::');
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const groups = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/** The whole answer to a refused socket: the API's error shape, and the socket closes after it. */
export function refusalResponse(reason: Refusal, caps: { perClient: number; max: number }): string {
  const body = JSON.stringify(
    reason === 'client'
      ? errorBody(
          'TOO_MANY_CONNECTIONS',
          `this client already has ${caps.perClient} connections open (MAX_CONNECTIONS_PER_CLIENT); reuse one (keep-alive) or close some first`,
        )
      : errorBody('CONNECTIONS_FULL', `this server already holds ${caps.max} connections (MAX_CONNECTIONS); retry shortly`),
  );
  return (
    'HTTP/1.1 503 Service Unavailable\r\n' +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `retry-after: ${CONNECTION_RETRY_AFTER_S}\r\n` +
    'connection: close\r\n\r\n' +
    body
  );
}

export interface ConnectionLimits {
  perClient: number;
  max: number;
  /** Sockets from these addresses skip the per-client cap: a trusted proxy carries many clients. */
  exempt(address: string): boolean;
  onRefuse?(reason: Refusal, address: string): void;
}

/**
 * Puts the caps in front of an HTTP server's own 'connection' listener, so a refused socket never
 * reaches the parser (its request, already sent, is not run) and an admitted one is parsed as
 * before. Returns the counts (for /metrics).
 */
export function limitConnections(server: Server, limits: ConnectionLimits): CappedCounts {
  const counts = new CappedCounts(limits.perClient, limits.max);
  const parsers = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) {
      socket.destroy(); // closed before it could be counted
      return;
    }
    const taken = counts.take(limits.exempt(address) ? undefined : clientOf(address));
    if (typeof taken === 'function') {
      socket.once('close', taken);
      for (const parse of parsers) parse.call(server, socket);
      return;
    }
    limits.onRefuse?.(taken, address);
    // Whatever the client sends is read and dropped; the answer goes out, then the socket closes.
    socket.on('data', () => {});
    socket.on('error', () => {});
    socket.on('end', () => socket.destroy());
    socket.setTimeout(REFUSED_LINGER_MS, () => socket.destroy());
    socket.end(refusalResponse(taken, limits));
  });
  return counts;
}
