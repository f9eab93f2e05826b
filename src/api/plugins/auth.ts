// API keys on the HTTP API. Each route says what it needs in its config (`config: {access}`: a
// scope, or 'public'); a route that says nothing needs `admin` (fail closed), except the hidden
// ones (the dashboard's static files, the docs UI), which are public.
//
// Per request, in Fastify's order:
//   onRequest (here)        who is calling: the Bearer key's row (cached), anonymous, or invalid
//   onRequest (per route)   the rate limit, keyed by that key or the client address (rate-limit.ts)
//   preParsing (here)       allowed? 401 / 403 before the body is read
// so a flood of bad keys is rate limited by address, and no body is parsed for a caller who may
// not send it.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AuthPolicy, crossSiteRefusal, decideAccess, hostRefusal, type Principal, type RequestSite } from '../../auth/auth-policy.js';
import type { RouteAccess } from '../../auth/scopes.js';
import { ServiceError } from '../../jobs/job-errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What the route needs: a scope, or 'public'. Absent: 'admin' (hidden routes: 'public'). */
    access?: RouteAccess;
  }
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyInstance {
    auth: AuthPolicy;
  }
}

export class AuthError extends ServiceError {
  constructor(status: 401 | 403 | 503, code: string, message: string) {
    super(status, code, message);
    this.name = 'AuthError';
  }
}

const ANONYMOUS: Principal = { kind: 'anonymous', authOff: false };

export function routeAccess(req: FastifyRequest): RouteAccess {
  // No route matched (404): nothing to protect, the not-found answer is the same for everyone.
  if (!req.routeOptions.url) return 'public';
  return req.routeOptions.config.access ?? 'admin';
}

/** A request header once (a repeated one is joined by Node: it then names no single site and is refused as such). */
const header = (req: FastifyRequest, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
};

/** The access rule (decideAccess) for this request's route, as `principal`. */
const decisionFor = (req: FastifyRequest, principal: Principal) => decideAccess(principal, routeAccess(req), `${req.method} ${req.routeOptions.url}`);

/**
 * Whether the caller of a response still being sent may still have it: the request's key is
 * looked up again (through the policy's cache, so within KEY_CACHE_MS of a change on another
 * replica or from the CLI) and its route's access decided again. For responses that outlive their
 * request by hours (a job's event stream): a key revoked, or auth turned on by a first key, must
 * end them, not only refuse the next request. A lookup that fails (database down) ends nothing.
 */
export async function accessHolds(policy: AuthPolicy, req: FastifyRequest): Promise<boolean> {
  let principal: Principal;
  try {
    principal = await policy.identify(req.headers.authorization);
  } catch {
    return true;
  }
  return decisionFor(req, principal).ok;
}

export const authPlugin = fp(
  async function auth(app: FastifyInstance, opts: { policy: AuthPolicy }) {
    const { policy } = opts;
    const start = await policy.startup(); // throws AuthSetupError: refuse to start
    app.log[start.level](start.message);
    app.decorate('auth', policy);
    app.decorateRequest('principal', null as never); // set by the onRequest hook below

    app.addHook('onRoute', (route) => {
      const hidden = route.schema?.hide === true;
      route.config = { ...(route.config ?? {}), access: route.config?.access ?? (hidden ? 'public' : 'admin') };
    });

    app.addHook('onRequest', async (req) => {
      const access = routeAccess(req);
      try {
        req.principal = await policy.identify(req.headers.authorization);
      } catch (err) {
        // Keys cannot be checked (database down). Public routes still answer, as anonymous.
        if (access === 'public') {
          req.principal = ANONYMOUS;
          return;
        }
        req.log.error({ err }, 'auth: cannot check the API key');
        throw new AuthError(503, 'AUTH_UNAVAILABLE', 'API keys cannot be checked right now (the database is unreachable); retry shortly');
      }
      if (!policy.hostAnswered(req.principal, req.headers.host)) {
        req.log.warn({ host: req.headers.host }, 'request for another host refused while auth is off on loopback');
        throw new AuthError(403, 'HOST_NOT_ALLOWED', hostRefusal(req.headers.host ?? ''));
      }
      const site: RequestSite = { method: req.method, host: req.headers.host, secFetchSite: header(req, 'sec-fetch-site'), origin: header(req, 'origin') };
      if (policy.crossSiteRefused(req.principal, site)) {
        req.log.warn({ origin: site.origin, secFetchSite: site.secFetchSite }, "a change from another site's page refused while auth is off");
        throw new AuthError(403, 'CROSS_SITE_REQUEST', crossSiteRefusal(site));
      }
    });

    app.addHook('preParsing', async (req, reply) => {
      const decision = decisionFor(req, req.principal ?? ANONYMOUS);
      if (decision.ok) return;
      if (decision.status === 401) {
        reply.header('www-authenticate', decision.code === 'API_KEY_INVALID' ? 'Bearer realm="qatserve", error="invalid_token"' : 'Bearer realm="qatserve"');
      }
      throw new AuthError(decision.status, decision.code, decision.message);
    });
  },
  { name: 'qatserve-auth', fastify: '5.x' },
);
