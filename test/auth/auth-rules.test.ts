// The auth rules as pure functions: key format and hashing, the Authorization header, scopes, what
// counts as loopback, and the access decision for every kind of caller.
import { describe, expect, it } from 'vitest';
import { bearerToken, generateKey, hashKey, keyMatches, lookupPrefix } from '../../src/auth/api-key.js';
import { crossSiteChange, crossSiteRefusal, decideAccess, hostAllowed, isLoopbackHost, type Principal, type RequestSite } from '../../src/auth/auth-policy.js';
import type { ApiKeyInfo } from '../../src/auth/key-store.js';
import { grants, parseScopes } from '../../src/auth/scopes.js';

const key = (scopes: ApiKeyInfo['scopes']): Principal => ({
  kind: 'key',
  authOff: false,
  key: { id: 'k', name: 'ci', prefix: 'qsk_12345678', scopes, createdAt: new Date(), lastUsedAt: null, revokedAt: null },
});

describe('API keys', () => {
  it('are 256 random bits, shaped qsk_<43 base64url>, unique, with a 12-character public prefix', () => {
    const keys = new Set(Array.from({ length: 1000 }, generateKey));
    expect(keys.size).toBe(1000);
    for (const k of [...keys].slice(0, 20)) {
      expect(k).toMatch(/^qsk_[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(k.slice(4), 'base64url')).toHaveLength(32);
      expect(lookupPrefix(k)).toBe(k.slice(0, 12));
    }
    expect(lookupPrefix('qsk_short')).toBeNull();
    expect(lookupPrefix(`x${generateKey()}`)).toBeNull();
  });

  it('match only their own SHA-256 (compared as bytes of equal length)', () => {
    const k = generateKey();
    const h = hashKey(k);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(h).not.toContain(k.slice(4, 20));
    expect(keyMatches(k, h)).toBe(true);
    expect(keyMatches(generateKey(), h)).toBe(false);
    expect(keyMatches(k, h.slice(0, 62))).toBe(false);
  });

  it('read the Bearer token of an Authorization header, case-insensitively, and nothing else', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer   abc ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeNull();
    expect(bearerToken('Bearer')).toBeNull();
    expect(bearerToken('Bearer ')).toBeNull();
    expect(bearerToken(undefined)).toBeNull();
  });
});

describe('scopes', () => {
  it('parse a comma list in canonical order and name an unknown scope', () => {
    expect(parseScopes('train, predict,train')).toEqual(['predict', 'train']);
    expect(() => parseScopes('predict,root')).toThrow(/unknown scope "root"; choose from predict, train, admin/);
    expect(() => parseScopes(' , ')).toThrow(/no scopes/);
  });
  it('admin holds every scope; the others only their own', () => {
    expect(grants(['admin'], 'train')).toBe(true);
    expect(grants(['predict'], 'train')).toBe(false);
    expect(grants(['predict', 'train'], 'admin')).toBe(false);
  });
});

describe('loopback', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.5.6.7', true],
    ['localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.5', false],
    ['example.com', false],
    ['128.0.0.1', false],
  ])('%s -> %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });
});

describe('Host of a request to a loopback API with auth off (DNS rebinding)', () => {
  it.each([
    ['localhost:3000', true],
    ['LOCALHOST', true],
    ['127.0.0.1:3000', true],
    ['[::1]:3000', true],
    ['dashboard.localhost:3000', true],
    [undefined, true],
    ['proxy.internal:8080', true], // in ALLOWED_HOSTS
    ['rebound.example.com:3000', false],
    ['127.0.0.1.nip.io:3000', false],
    ['localhost.example.com', false],
    ['10.0.0.5:3000', false],
    ['', false],
  ])('%s -> %s', (host, answered) => {
    expect(hostAllowed(host, ['proxy.internal'])).toBe(answered);
  });
});

describe("a change sent by another site's page (cross-site request forgery), while auth is off", () => {
  const post = (headers: Omit<RequestSite, 'method' | 'host'>): RequestSite => ({ method: 'POST', host: 'localhost:3000', ...headers });
  it.each<[string, RequestSite, boolean]>([
    ['the dashboard (same origin)', post({ secFetchSite: 'same-origin', origin: 'http://localhost:3000' }), false],
    ['typed or bookmarked by the user', post({ secFetchSite: 'none' }), false],
    ['curl or a program (no browser headers)', post({}), false],
    ['another site', post({ secFetchSite: 'cross-site', origin: 'https://evil.example' }), true],
    ['another port on localhost (same site, not same origin)', post({ secFetchSite: 'same-site', origin: 'http://localhost:8080' }), true],
    ['a repeated Sec-Fetch-Site (joined by Node)', post({ secFetchSite: 'same-origin, cross-site' }), true],
    ['an older browser: Origin of this host', post({ origin: 'http://localhost:3000' }), false],
    ['an older browser: Origin of another host', post({ origin: 'https://evil.example' }), true],
    ['an older browser: Origin of another port', post({ origin: 'http://localhost:8080' }), true],
    ['an older browser: Origin null (sandboxed page, data: URL)', post({ origin: 'null' }), true],
    ['an older browser: Origin of an ALLOWED_HOSTS name (a proxy)', post({ origin: 'https://proxy.internal' }), false],
    ['a DELETE from another site', { method: 'DELETE', host: 'localhost:3000', secFetchSite: 'cross-site' }, true],
    ['a read from another site (its answer is not readable there)', { method: 'GET', host: 'localhost:3000', secFetchSite: 'cross-site' }, false],
  ])('%s', (_what, req, refused) => {
    expect(crossSiteChange(req, ['proxy.internal'])).toBe(refused);
  });
  it('says where the request came from and what to do', () => {
    expect(crossSiteRefusal(post({ secFetchSite: 'cross-site' }))).toMatch(/auth is off.*POST came from one, Sec-Fetch-Site: cross-site.*dashboard.*curl/);
    expect(crossSiteRefusal(post({ origin: 'https://evil.example' }))).toContain('Origin: https://evil.example');
  });
});

describe('access decision', () => {
  const what = 'POST /v1/jobs';
  it('lets everyone through public routes and everything through when auth is off', () => {
    expect(decideAccess({ kind: 'anonymous', authOff: false }, 'public', what).ok).toBe(true);
    expect(decideAccess({ kind: 'anonymous', authOff: true }, 'admin', what).ok).toBe(true);
  });
  it('answers 401 without a key or with a bad one, 403 with the wrong scope', () => {
    expect(decideAccess({ kind: 'anonymous', authOff: false }, 'train', what)).toMatchObject({ ok: false, status: 401, code: 'AUTH_REQUIRED' });
    expect(decideAccess({ kind: 'invalid', authOff: false }, 'train', what)).toMatchObject({ ok: false, status: 401, code: 'API_KEY_INVALID' });
    const denied = decideAccess(key(['predict']), 'train', what);
    expect(denied).toMatchObject({ ok: false, status: 403, code: 'SCOPE_MISSING' });
    expect(!denied.ok && denied.message).toContain('needs the "train" scope; key "ci" has predict');
    expect(decideAccess(key(['train']), 'train', what).ok).toBe(true);
    expect(decideAccess(key(['admin']), 'train', what).ok).toBe(true);
    expect(decideAccess(key(['predict', 'train']), 'admin', what).ok).toBe(false);
  });
});
