// A server's address as URLs and people write it: host:port, an IPv6 literal in brackets. Log lines
// said "PostgreSQL at ::1:5432", which reads as host ::1:5432 on port nothing.
import { isIPv6 } from 'node:net';

export const hostPort = (host: string, port: string | number): string => `${isIPv6(host) ? `[${host}]` : host}:${port}`;
