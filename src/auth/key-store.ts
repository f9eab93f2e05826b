// The ApiKey table: create (returns the key once), list, revoke, and look a presented key up.
// Shared by `qatserve keys` and the API's auth plugin.
import { randomUUID } from 'node:crypto';
import type { Prisma } from '../db/database.js';
import { generateKey, hashKey, keyMatches, lookupPrefix } from './api-key.js';
import { parseScopes, SCOPES, type Scope } from './scopes.js';

export interface ApiKeyInfo {
  id: string;
  name: string;
  /** The key's public first characters, to tell keys apart in listings and logs. */
  prefix: string;
  scopes: Scope[];
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export class KeyError extends Error {
  constructor(
    readonly code: 'KEY_NAME_INVALID' | 'KEY_NAME_TAKEN' | 'KEY_NOT_FOUND' | 'SCOPES_INVALID',
    message: string,
  ) {
    super(message);
    this.name = 'KeyError';
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

interface KeyRow {
  id: string;
  name: string;
  prefix: string;
  keyHash: string;
  scopes: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

function toInfo(row: KeyRow): ApiKeyInfo {
  const scopes = row.scopes.split(',').filter((s): s is Scope => (SCOPES as readonly string[]).includes(s));
  return { id: row.id, name: row.name, prefix: row.prefix, scopes, createdAt: row.createdAt, lastUsedAt: row.lastUsedAt, revokedAt: row.revokedAt };
}

export class KeyStore {
  constructor(private readonly prisma: Prisma) {}

  /** A new key with these scopes. The returned `key` is the only time it exists in clear. */
  async create(name: string, scopes: readonly Scope[] | string): Promise<{ key: string; info: ApiKeyInfo }> {
    if (!NAME.test(name)) {
      throw new KeyError('KEY_NAME_INVALID', `key name "${name}" is invalid: 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
    }
    let list: Scope[];
    try {
      list = typeof scopes === 'string' ? parseScopes(scopes) : parseScopes(scopes.join(','));
    } catch (err) {
      throw new KeyError('SCOPES_INVALID', (err as Error).message);
    }
    const existing = await this.prisma.apiKey.findUnique({ where: { name } });
    if (existing) {
      const why = existing.revokedAt ? 'a revoked key had it (names stay with their keys, for the record)' : 'a key has it';
      throw new KeyError('KEY_NAME_TAKEN', `the name "${name}" is taken: ${why}; choose another`);
    }
    const key = generateKey();
    const row = await this.prisma.apiKey.create({
      data: { id: randomUUID(), name, prefix: lookupPrefix(key)!, keyHash: hashKey(key), scopes: list.join(',') },
    });
    return { key, info: toInfo(row) };
  }

  /** Every key, oldest first, revoked ones included. */
  async list(): Promise<ApiKeyInfo[]> {
    return (await this.prisma.apiKey.findMany({ orderBy: [{ createdAt: 'asc' }, { name: 'asc' }] })).map(toInfo);
  }

  /** Revokes a key by name (idempotent); the row stays, so its jobs still name it. */
  async revoke(name: string): Promise<ApiKeyInfo> {
    const row = await this.prisma.apiKey.findUnique({ where: { name } });
    if (!row) throw new KeyError('KEY_NOT_FOUND', `no key named "${name}"`);
    if (row.revokedAt) return toInfo(row);
    return toInfo(await this.prisma.apiKey.update({ where: { id: row.id }, data: { revokedAt: new Date() } }));
  }

  /** Whether any key was ever created (revoked ones count: revoking the last key does not turn auth off). */
  async any(): Promise<boolean> {
    return (await this.prisma.apiKey.findFirst({ select: { id: true } })) !== null;
  }

  /** The active key a client presented, or null (malformed, unknown or revoked). */
  async verify(presented: string): Promise<ApiKeyInfo | null> {
    const prefix = lookupPrefix(presented);
    if (!prefix) return null;
    const rows = await this.prisma.apiKey.findMany({ where: { prefix } });
    // Compare with every candidate (normally one), so timing says nothing about which matched.
    let found: KeyRow | null = null;
    for (const r of rows) if (keyMatches(presented, r.keyHash) && !found) found = r;
    return found && !found.revokedAt ? toInfo(found) : null;
  }

  async touch(id: string, at = new Date()): Promise<void> {
    await this.prisma.apiKey.update({ where: { id }, data: { lastUsedAt: at } });
  }
}
