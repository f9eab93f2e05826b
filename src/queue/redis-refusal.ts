// A Redis that answers but turns connections away says why in its first line and closes: at its
// maxclients "-ERR max number of clients reached" (a managed Redis caps connections, 20 or 30 on
// small plans, and a fleet's processes each hold several), in protected mode "-DENIED Redis is
// running in protected mode ..." (no password set, and the client is not on loopback: a Redis
// shared by a second machine). ioredis reports neither: its connection closes before it is ready,
// at most with "write EPIPE". Measured by hand before: a worker turned away by maxclients logged
// nothing and its jobs stayed queued; under protected mode the API said "cannot be used (Stream
// isn't writeable ...)" and the worker "cannot be reached (write EPIPE)", about a server that was up.
import net from 'node:net';
import tls from 'node:tls';
import type { Redis } from 'ioredis';

/** Redis's own words for turning this process's connections away. */
export class RedisRefusal extends Error {
  constructor(line: string) {
    super(line);
    this.name = 'RedisRefusal';
  }
}

/**
 * What Redis says, unasked, to a new connection of `redis`'s settings (its host and port, or Unix
 * socket, and TLS): its first line when that is an error reply, else null (it waits for a command,
 * as a Redis that takes the connection does, or cannot be reached). At most `timeoutMs`.
 */
export function readRefusal(redis: Redis, timeoutMs: number): Promise<RedisRefusal | null> {
  const o = redis.options;
  return new Promise((resolve) => {
    const socket = o.path
      ? net.connect(o.path)
      : o.tls
        ? tls.connect({ ...o.tls, host: o.host, port: o.port, servername: o.tls.servername ?? o.host })
        : net.connect(o.port ?? 6379, o.host ?? 'localhost');
    let data = '';
    const done = (refusal: RedisRefusal | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(refusal);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
      const end = data.indexOf('\r\n');
      if (end >= 0 || data.length > 4096) done(data.startsWith('-') ? new RedisRefusal(data.slice(1, end >= 0 ? end : undefined)) : null);
    });
    socket.on('error', () => done(null));
    socket.on('close', () => done(null));
  });
}

/** The words after "Redis at host:port " for a refusal: its reason in short, and what to do. */
export function refusalLine(refusal: RedisRefusal): string {
  if (/^ERR max number of clients reached/.test(refusal.message)) {
    return (
      'turns this connection away: it holds its maxclients connections ("ERR max number of clients reached"). ' +
      "Each qatserve API holds 4 connections and each worker 5 (`qatserve serve` 9): raise maxclients (or the plan's connection limit), or close other clients"
    );
  }
  if (/^DENIED\b/.test(refusal.message)) {
    return (
      'turns this connection away: it runs in protected mode, which takes connections from other machines only with a password ("DENIED"). ' +
      'Set a password on it (requirepass) and give it in REDIS_URL (redis://:<password>@host:port)'
    );
  }
  return `turns this connection away ("${refusal.message.slice(0, 300)}")`;
}
