// Nothing a client should not see leaves in an error body: absolute file paths (they map the
// server's disk), connection strings (they may hold credentials and name internal hosts) and
// stack traces. Error messages are written not to contain them; this is the net under that, run
// on every 4xx/5xx body. Each pattern starts at a fixed token and no two of its quantified parts
// can match the same characters, so the scan stays linear in the body's length (a regex here must
// not become the next ReDoS; test/api/redact.test.ts times adversarial inputs).

/** `postgres://u:p@h/db`, `redis://h:6379`, `file:./data/x.db`, ... */
const CONNECTION_STRING = /\b(?:postgres|postgresql|redis|rediss|mysql|mongodb|amqp|amqps|file):[^\s"'<>]+/gi;
/** Any other URL's credentials: `scheme://user:password@` -> `scheme://<redacted>@`. */
const URL_CREDENTIALS = /:\/\/[^\s"'<>/@]+@/g;
/**
 * An absolute POSIX path of two or more segments after a delimiter, except the API's own routes
 * (a 404 names the route it did not find).
 */
const POSIX_PATH = /(?<=^|[\s"'(=[,:])\/(?!v1\/)[^\s"'<>()/]+\/[^\s"'<>()]*/g;
/** `C:\dir\file` (backslashes escaped once or twice: JSON text). */
const WINDOWS_PATH = /\b[A-Za-z]:\\{1,2}[^\s"'<>]+/g;
/** A V8 stack frame: `    at fn (file:line:col)`, raw or JSON-escaped. */
const STACK_FRAME = /(?:\n|\\n)[ \t]*at [^\n\\]+/g;

export function redact(text: string): string {
  return text
    .replace(CONNECTION_STRING, '<redacted>')
    .replace(URL_CREDENTIALS, '://<redacted>@')
    .replace(STACK_FRAME, '')
    .replace(WINDOWS_PATH, '<path>')
    .replace(POSIX_PATH, '<path>');
}
