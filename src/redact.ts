// Nothing a client should not see leaves in an error body: absolute file paths (they map the
// server's disk), connection strings (they may hold credentials and name internal hosts) and
// stack traces. Error messages are written not to contain them; this is the net under that, run
// on every 4xx/5xx body and on the error a failed job keeps (a worker's message, shown to clients
// in 200 bodies and events; the worker's log has it whole). Each pattern starts at a fixed token and no two of its quantified parts
// can match the same characters, so the scan stays linear in the body's length (a regex here must
// not become the next ReDoS; test/api/redact.test.ts times adversarial inputs).

/** `postgres://u:p@h/db`, `redis://h:6379`, `file:./data/x.db`, ... */
const CONNECTION_STRING = /\b(?:postgres|postgresql|redis|rediss|mysql|mongodb|amqp|amqps|file):[^\s"'<>\\]+/gi;
/** Any other URL's credentials: `scheme://user:password@` -> `scheme://<redacted>@`. */
const URL_CREDENTIALS = /:\/\/[^\s"'<>/@]+@/g;
/**
 * An absolute POSIX path of two or more segments after a delimiter, except the API's own routes
 * (a 404 names the route it did not find).
 */
const POSIX_PATH = /(?<=^|[\s"'(=[,:])\/(?!v1\/)[^\s"'<>()/\\]+\/[^\s"'<>()\\]*/g;
/** `C:\dir\file`. */
const WINDOWS_PATH = /\b[A-Za-z]:\\[^\s"'<>]+/g;
/** A V8 stack frame: `    at fn (file:line:col)`. */
const STACK_FRAME = /\n[ \t]*at [^\n]+/g;

/** Redacts a text (an error message). */
export function redact(text: string): string {
  return text
    .replace(CONNECTION_STRING, '<redacted>')
    .replace(URL_CREDENTIALS, '://<redacted>@')
    .replace(STACK_FRAME, '')
    .replace(WINDOWS_PATH, '<path>')
    .replace(POSIX_PATH, '<path>');
}

/** Every string in a JSON value, redacted (keys and structure kept). */
export function redactJson(value: unknown): unknown {
  if (typeof value === 'string') return redact(value);
  if (Array.isArray(value)) return value.map(redactJson);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactJson(v)]));
  return value;
}

/** An error response body (JSON text, or plain text), redacted. */
export function redactBody(payload: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    return redact(payload);
  }
  return JSON.stringify(redactJson(parsed));
}
