// The one logger shape the service's modules take: a subset of pino's (Fastify's app.log and the
// worker's logger pass as they are), fields first, then the message. Tests pass a silent one.
export interface Logger {
  info(fields: object, msg?: string): void;
  warn(fields: object, msg?: string): void;
  error(fields: object, msg?: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
