// API keys as values: 32 random bytes, shown once as `qsk_<base64url>`; stored as the SHA-256 of
// the whole key and a short public prefix that finds the row. A SHA-256 is enough here (no slow
// password hash): the secret is 256 random bits, not something a person chose.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const KEY_PREFIX = 'qsk_';
/** `qsk_` and 8 characters (48 random bits): the public part stored in clear to find the row. */
const LOOKUP_LENGTH = KEY_PREFIX.length + 8;
/** `qsk_` + base64url of 32 bytes (43 characters). */
const KEY_SHAPE = /^qsk_[A-Za-z0-9_-]{43}$/;

export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** The public part of a key, or null when the text is not shaped like one of our keys. */
export function lookupPrefix(key: string): string | null {
  return KEY_SHAPE.test(key) ? key.slice(0, LOOKUP_LENGTH) : null;
}

/** Constant-time comparison of a presented key with a stored hash. */
export function keyMatches(key: string, storedHash: string): boolean {
  const a = Buffer.from(hashKey(key), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header (null when absent or another scheme). */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space).toLowerCase() !== 'bearer') return null;
  const token = header.slice(space + 1).trim();
  return token === '' ? null : token;
}
