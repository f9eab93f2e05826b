// The one logger shape the service's modules take: a subset of pino's (Fastify's app.log and the
// worker's logger pass as they are). Like pino, a call is either a message alone or fields first,
// then the message. Tests pass a silent one.
export interface LogMethod {
  (msg: string): void;
  (fields: object, msg?: string): void;
}

export interface Logger {
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** The two call forms as one pair, for adapters that forward log lines (to a thread's parent, to a terminal). */
export function logParts(a: object | string, b?: string): { msg: string; fields?: object } {
  return typeof a === 'string' ? { msg: a } : { msg: b ?? '', fields: a };
}
