// The socket errors of a server that cannot be reached or stopped answering, as Node raises them
// (pg and ioredis pass them on with their code): the database's and Redis's "unavailable".

const SOCKET_UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

/** Whether `err` is a socket error of a server out of reach. */
export function isSocketUnreachable(err: unknown): boolean {
  const { code, syscall } = (err ?? {}) as { code?: unknown; syscall?: unknown };
  if (typeof code !== 'string') return false;
  // A Unix socket whose file is not there: no server listens on it (or not on this machine).
  return SOCKET_UNREACHABLE_CODES.has(code) || (code === 'ENOENT' && syscall === 'connect');
}
