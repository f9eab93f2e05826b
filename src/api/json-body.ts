// JSON request bodies: parsed with Fastify's prototype-poisoning rules (secure-json-parse), after a
// scan that refuses shapes no route takes. JSON.parse runs on the event loop and its cost grows
// with the number of values, not the bytes: a 13 MB body (the most /v1/predict admits, for base64
// images) of nested `[` took 5.4 s to parse, and one of `[],` repeated 1.0 s, with every request
// (and /healthz) frozen meanwhile. The largest body a route takes has under 100 values and 3
// levels, so the limits below cost no user anything, and the scan skips string contents with
// indexOf: a 13 MB base64 image passes in under a millisecond.
import secureJson from 'secure-json-parse';
import { ServiceError, ValidationError } from '../jobs/job-errors.js';

/** Most levels of `[`/`{` a body may nest. */
export const MAX_JSON_DEPTH = 32;
/** Most values (`[`, `{` and `,` outside strings) a body may hold. */
export const MAX_JSON_VALUES = 10_000;

/** Index of the `"` closing the string opened at `open`, or the text's length when none does. */
function endOfString(text: string, open: number): number {
  let i = open;
  for (;;) {
    i = text.indexOf('"', i + 1);
    if (i < 0) return text.length;
    let k = i - 1;
    while (text.charCodeAt(k) === 0x5c /* \ */) k--;
    if ((i - 1 - k) % 2 === 0) return i; // an even run of backslashes escapes none of this quote
  }
}

const STRUCTURE = /["[\]{},]/g;

/**
 * Which limit the JSON text breaks, if any, found without parsing it. Malformed text may pass:
 * JSON.parse refuses it afterwards, cheaply, since it is small or shallow by then.
 */
export function jsonShapeProblem(text: string, maxDepth = MAX_JSON_DEPTH, maxValues = MAX_JSON_VALUES): string | null {
  let depth = 0;
  let values = 0;
  STRUCTURE.lastIndex = 0;
  for (let m = STRUCTURE.exec(text); m !== null; m = STRUCTURE.exec(text)) {
    const c = text[m.index];
    if (c === '"') {
      STRUCTURE.lastIndex = endOfString(text, m.index) + 1;
      continue;
    }
    if (c === '[' || c === '{') {
      if (++depth > maxDepth) return `the JSON body nests deeper than ${maxDepth} levels`;
    } else if (c !== ',') {
      depth--;
      continue;
    }
    if (++values > maxValues) return `the JSON body holds more than ${maxValues} values`;
  }
  return null;
}

/** A declared charset other than UTF-8 (or its subset ASCII), the only one JSON is exchanged in (RFC 8259), or null. */
export function foreignCharset(contentType: string | undefined): string | null {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1].toLowerCase();
  return charset && !['utf-8', 'utf8', 'us-ascii'].includes(charset) ? charset : null; // ASCII is UTF-8
}

/**
 * The body's value; a 400 with code JSON_TOO_COMPLEX or INVALID_JSON (saying where) when refused,
 * a 415 when its content type declares a charset other than UTF-8 (the text would not be it).
 */
export function parseJsonBody(text: string, contentType?: string): unknown {
  const charset = foreignCharset(contentType);
  if (charset) throw new ServiceError(415, 'UNSUPPORTED_MEDIA_TYPE', `JSON bodies are UTF-8; the content type declares charset "${charset.slice(0, 40)}"`);
  const problem = jsonShapeProblem(text);
  if (problem) throw new ValidationError('JSON_TOO_COMPLEX', problem, []);
  try {
    return secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // V8's messages quote where the text breaks; secure-json-parse's name no key.
    const why = /forbidden prototype/.test(message) ? 'a "__proto__" or "constructor.prototype" key is not accepted' : message;
    throw new ValidationError('INVALID_JSON', `JSON body: ${why}`, []);
  }
}
