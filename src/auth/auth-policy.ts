// When does the API ask for a key, and who is calling. Pure rules plus a small cache over the
// ApiKey table, so a request costs no database round trip while its key is warm.
//
// When auth applies (AUTH=auto, the default):
//   loopback HOST and no key ever created -> off (`npm start` and the README's curl lines just work);
//   otherwise                            -> on.
// A non-loopback HOST with no key refuses to start, unless AUTH=off (warned at every start).
// Creating the first key turns auth on within KEY_CACHE_MS, without a restart.
import { isIP } from 'node:net';
import { bearerToken, hashKey } from './api-key.js';
import type { ApiKeyInfo, KeyStore } from './key-store.js';
import { grants, type RouteAccess } from './scopes.js';

export type AuthSetting = 'auto' | 'on' | 'off';

/** How long a looked-up key (or its absence) is trusted: revocation reaches every replica within it. */
export const KEY_CACHE_MS = 2000;
/** `lastUsedAt` is written at most this often per key and replica. */
const TOUCH_EVERY_MS = 60_000;
const CACHE_MAX_ENTRIES = 10_000;

export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * Whether a request naming `hostHeader` may be answered by an API that listens on loopback with
 * auth off. Such an API trusts whoever reaches the port, and a web page the user has open can
 * reach it by DNS rebinding (its own name re-pointed at 127.0.0.1): the page's requests then name
 * the page's host, never a loopback one. So only loopback names (localhost, *.localhost, 127.x,
 * [::1]) and the operator's `allowed` names (ALLOWED_HOSTS, e.g. a proxy on this machine; lower
 * case, as settings.ts gives them) are answered. A request without Host (HTTP/1.0) comes from no
 * browser and passes.
 */
export function hostAllowed(hostHeader: string | undefined, allowed: readonly string[]): boolean {
  if (hostHeader === undefined) return true;
  const name = hostHeader.trim().toLowerCase().replace(/:\d*$/, '');
  return isLoopbackHost(name) || name.endsWith('.localhost') || allowed.includes(name);
}

/** The refusal of a request `hostAllowed` turned away: what the operator can do about it. */
export function hostRefusal(hostHeader: string): string {
  return (
    `this API listens on loopback with auth off (no API key yet), so it answers only requests for localhost; this one named "${hostHeader}" ` +
    '(another site through DNS rebinding, or a proxy): open it as localhost, create an API key (qatserve keys create), or add the host to ALLOWED_HOSTS'
  );
}

/** Methods that change nothing here; a page may send them anywhere, but cannot read the answer (no CORS). */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** What a request says about where a browser sent it from; non-browser clients send neither header. */
export type RequestSite = { method: string; host?: string; secFetchSite?: string; origin?: string };

/**
 * Whether a request is a change (POST, DELETE) another site's page made the user's browser send.
 * A page may send forms, plain-text and no-cors POSTs to any address without asking first (no CORS
 * preflight), so while auth is off a site the user has open could cancel jobs or run predictions
 * on this API through the browser (cross-site request forgery; the Host is localhost, so the
 * rebinding rule above does not see it). Every current browser says where a request comes from in
 * Sec-Fetch-Site: only `same-origin` (this API's dashboard) and `none` (typed by the user) pass;
 * `same-site` too is refused, as another port on localhost is the same site. Browsers that do not
 * send it send Origin on such POSTs, which must then name this host (or an ALLOWED_HOSTS name).
 */
export function crossSiteChange(req: RequestSite, allowed: readonly string[]): boolean {
  if (READ_METHODS.has(req.method)) return false;
  const site = req.secFetchSite?.trim().toLowerCase();
  if (site) return site !== 'same-origin' && site !== 'none';
  if (req.origin === undefined) return false;
  let origin: URL;
  try {
    origin = new URL(req.origin); // `null` (a sandboxed page, a data: URL) does not parse: refused
  } catch {
    return true;
  }
  if (req.host !== undefined && origin.host === req.host.trim().toLowerCase()) return false;
  return !allowed.includes(origin.hostname);
}

/** The refusal of a request `crossSiteChange` turned away. */
export function crossSiteRefusal(req: RequestSite): string {
  const from = req.secFetchSite ? `Sec-Fetch-Site: ${req.secFetchSite}` : `Origin: ${req.origin}`;
  return (
    `auth is off on this API (no API key asked), so it takes no change from another site's page (this ${req.method} came from one, ${from}): ` +
    'any site open in a browser could send it. Use the dashboard this API serves, or send it from a program (curl, a script)'
  );
}

export class AuthSetupError extends Error {
  readonly code = 'AUTH_SETUP';
}

export function noKeyMessage(host: string): string {
  return (
    `qatserve refuses to listen on ${host} with no API key: anyone who reaches the port could train, ` +
    'promote and download models.\n' +
    'Create an admin key first, then start again:\n' +
    '  qatserve keys create --name admin --scopes admin\n' +
    '  (Docker: docker run --rm -v qatserve-data:/data qatserve keys create --name admin --scopes admin)\n' +
    'or bind to loopback (HOST=127.0.0.1), or set AUTH=off to run with no authentication at all.'
  );
}

/** Who is calling. `authOff`: auth does not apply to this request (everything is allowed). */
export type Principal = { kind: 'key'; key: ApiKeyInfo; authOff: false } | { kind: 'anonymous'; authOff: boolean } | { kind: 'invalid'; authOff: false };

export type AccessDecision =
  | { ok: true }
  | { ok: false; status: 401; code: 'AUTH_REQUIRED' | 'API_KEY_INVALID'; message: string }
  | { ok: false; status: 403; code: 'SCOPE_MISSING'; message: string };

/** The rule for one request: pure, so every case is a one-line test. */
export function decideAccess(principal: Principal, access: RouteAccess, what: string): AccessDecision {
  if (access === 'public' || principal.authOff) return { ok: true };
  if (principal.kind === 'anonymous') {
    return { ok: false, status: 401, code: 'AUTH_REQUIRED', message: `${what} needs an API key with the "${access}" scope: send Authorization: Bearer <key>` };
  }
  if (principal.kind === 'invalid') {
    return { ok: false, status: 401, code: 'API_KEY_INVALID', message: 'the API key is unknown, malformed or revoked' };
  }
  if (!grants(principal.key.scopes, access)) {
    return {
      ok: false,
      status: 403,
      code: 'SCOPE_MISSING',
      message: `${what} needs the "${access}" scope; key "${principal.key.name}" has ${principal.key.scopes.join(', ')}`,
    };
  }
  return { ok: true };
}

/** True for callers allowed everything (an admin key, or auth off): job auto-serve, readiness detail. */
export function isAdmin(p: Principal | null | undefined): boolean {
  return !!p && (p.authOff || (p.kind === 'key' && p.key.scopes.includes('admin')));
}

/** The key's id for job ownership, or null (auth off / anonymous). */
export function principalKeyId(p: Principal | null | undefined): string | null {
  return p?.kind === 'key' ? p.key.id : null;
}

export class AuthPolicy {
  private keysExist: { value: boolean; at: number } | null = null;
  private readonly cache = new Map<string, { key: ApiKeyInfo | null; at: number }>();
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly setting: AuthSetting,
    private readonly host: string,
    private readonly keys: KeyStore,
    private readonly now: () => number = Date.now,
    private readonly allowedHosts: readonly string[] = [],
  ) {}

  /** Whether this request's Host may be answered: see hostAllowed (only while auth is off on loopback). */
  hostAnswered(principal: Principal, hostHeader: string | undefined): boolean {
    return !principal.authOff || !isLoopbackHost(this.host) || hostAllowed(hostHeader, this.allowedHosts);
  }

  /** Whether this request is a change from another site's page that must be refused: see crossSiteChange (only while auth is off). */
  crossSiteRefused(principal: Principal, req: RequestSite): boolean {
    return principal.authOff && crossSiteChange(req, this.allowedHosts);
  }

  /**
   * At start: refuses a non-loopback bind with no key (unless AUTH=off), and says what applies.
   * Returns the line to log and its level.
   */
  async startup(): Promise<{ level: 'info' | 'warn'; message: string }> {
    if (this.setting === 'off') {
      return { level: 'warn', message: `AUTH=off: no request needs an API key; anyone who reaches ${this.host} can train, promote and download models` };
    }
    const loopback = isLoopbackHost(this.host);
    let any: boolean;
    try {
      any = await this.keys.any();
    } catch (err) {
      // The database is not up yet: start anyway, failing closed (every protected route answers
      // 503 until keys can be checked) rather than crash-looping.
      return { level: 'warn', message: `auth: cannot read the API keys yet (${(err as Error).message.split('\n')[0]}); deciding per request` };
    }
    if (!any && !loopback) throw new AuthSetupError(noKeyMessage(this.host));
    if (this.setting === 'on') return { level: 'info', message: 'auth: every API route needs a key (AUTH=on)' };
    if (any || !loopback) return { level: 'info', message: 'auth: every API route needs a key' };
    return { level: 'info', message: `auth: off while no API key exists and the API listens on loopback (${this.host}); \`qatserve keys create\` turns it on` };
  }

  /** Whether requests need a key right now. */
  async required(): Promise<boolean> {
    if (this.setting !== 'auto') return this.setting === 'on';
    if (!isLoopbackHost(this.host)) return true;
    const c = this.keysExist;
    // Once a key exists it always will (revoked rows stay), so `true` is never looked up again.
    if (c && (c.value || this.now() - c.at < KEY_CACHE_MS)) return c.value;
    const value = await this.keys.any();
    this.keysExist = { value, at: this.now() };
    return value;
  }

  /** Drops cached lookups (after a key change here, so it applies at once on this replica). */
  forget(): void {
    this.cache.clear();
    this.keysExist = null;
  }

  /** Who sent this Authorization header. */
  async identify(authorization: string | undefined): Promise<Principal> {
    if (!(await this.required())) return { kind: 'anonymous', authOff: true };
    if (authorization === undefined) return { kind: 'anonymous', authOff: false };
    const token = bearerToken(authorization);
    const key = token ? await this.lookup(token) : null;
    return key ? { kind: 'key', key, authOff: false } : { kind: 'invalid', authOff: false };
  }

  private async lookup(token: string): Promise<ApiKeyInfo | null> {
    const t = this.now();
    // Cached by hash, so the process keeps no key in clear longer than the request.
    const id = hashKey(token);
    const hit = this.cache.get(id);
    if (hit && t - hit.at < KEY_CACHE_MS) return hit.key;
    const key = await this.keys.verify(token);
    if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.clear();
    this.cache.set(id, { key, at: t });
    if (key && t - (this.touched.get(key.id) ?? 0) >= TOUCH_EVERY_MS) {
      this.touched.set(key.id, t);
      // Best effort: a failed write only leaves `keys list` a little stale.
      this.keys.touch(key.id, new Date(t)).catch(() => {});
    }
    return key;
  }
}
