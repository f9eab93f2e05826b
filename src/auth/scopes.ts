// What a key may do. Scopes live on the key row; `admin` holds every other scope.
//   predict: POST /v1/predict (and /predict), reading models
//   train:   creating, reading and cancelling jobs
//   admin:   everything, including promotion and keys
export const SCOPES = ['predict', 'train', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** What a route requires: a scope, or nothing (`public`: /healthz, /readyz, /metrics, the dashboard's files). */
export type RouteAccess = Scope | 'public';

export function grants(held: readonly Scope[], needed: Scope): boolean {
  return held.includes('admin') || held.includes(needed);
}

export class ScopeListError extends Error {
  readonly code = 'SCOPES_INVALID';
}

/** `predict,train` -> ['predict', 'train'] (deduplicated, in canonical order); names a bad one. */
export function parseScopes(text: string): Scope[] {
  const names = text
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
  if (names.length === 0) throw new ScopeListError(`no scopes given; choose from ${SCOPES.join(', ')}`);
  for (const n of names) {
    if (!(SCOPES as readonly string[]).includes(n)) throw new ScopeListError(`unknown scope "${n}"; choose from ${SCOPES.join(', ')}`);
  }
  return SCOPES.filter((s) => names.includes(s));
}
