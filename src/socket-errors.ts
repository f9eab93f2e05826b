// The socket errors of a server that cannot be reached or stopped answering, as Node raises them
// (pg and ioredis pass them on with their code): the database's and Redis's "unavailable". And
// TLS certificates Node did not accept, which no wait cures.

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

/** Node's codes for a server certificate it did not accept: an unknown CA, self-signed, expired, issued for another name. */
const CERT_REFUSED_CODES =
  /^(CERT_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_(GET_ISSUER_CERT|VERIFY_LEAF_SIGNATURE)|ERR_TLS_CERT_ALTNAME_INVALID$)/;

/** Whether `err` is Node refusing a server's TLS certificate. */
export function isCertRefused(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && CERT_REFUSED_CODES.test(code);
}

/** The words after "<server> " for a certificate Node refused (isCertRefused). */
export const certRefusedLine = (err: Error): string =>
  `sent a TLS certificate this process does not accept (${err.message}): trust the CA that signed it with NODE_EXTRA_CA_CERTS=<file>, or connect by the name it was issued for`;
