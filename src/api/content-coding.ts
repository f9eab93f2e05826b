// Content codings of request bodies (RFC 9110 8.4). No route decodes one: app.ts answers a coded
// body with 415 UNSUPPORTED_CONTENT_ENCODING before reading it.

/**
 * The content coding a request body says it is sent in (RFC 9110 8.4), lower-cased, when it is one
 * other than `identity` and there is a body; else null.
 */
export function bodyCoding(headers: { 'content-encoding'?: string; 'content-length'?: string; 'transfer-encoding'?: string }): string | null {
  const hasBody = (headers['content-length'] !== undefined && headers['content-length'] !== '0') || headers['transfer-encoding'] !== undefined;
  const codings = (headers['content-encoding'] ?? '')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  return hasBody && codings.length > 0 ? codings.join(', ') : null;
}
