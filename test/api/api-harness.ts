// A real app for inject tests: a migrated SQLite file or PostgreSQL schema, real Redis with a
// queue prefix of its own (so test runs never see each other's queue entries).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/app.js';
import { openApiDeps, type OpenedDeps } from '../../src/api/api-deps.js';
import { loadSettings, type Settings } from '../../src/config/settings.js';
import { bindDeployment } from '../../src/db/deployment.js';
import { migrate } from '../../src/db/migrate.js';
import { dropSchema, pgUrl, uniqueSchema } from '../db/test-databases.js';

export interface Harness {
  app: FastifyInstance;
  deps: OpenedDeps;
  settings: Settings;
  dir: string;
  close(): Promise<void>;
}

export type DbKind = 'sqlite' | 'postgres';

/** `pgBase`: the PostgreSQL server and database to reach it through (default PG_BASE; a pooler's, say). */
export async function startHarness(kind: DbKind, env: Record<string, string> = {}, pgBase?: string): Promise<Harness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qatserve-api-'));
  const schema = uniqueSchema('api');
  const databaseUrl = kind === 'sqlite' ? `file:${path.join(dir, 'db.sqlite')}` : pgUrl(schema, pgBase);
  const unbound = loadSettings({
    DATABASE_URL: databaseUrl,
    DATA_DIR: dir,
    QUEUE_PREFIX: `qs-test-${process.pid}-${Date.now().toString(36)}`,
    LOG_LEVEL: 'silent',
    ...env,
  });
  const { deploymentId } = await migrate(databaseUrl);
  const settings = bindDeployment(unbound, deploymentId);
  const deps = openApiDeps(settings, false);
  const app = await buildApp(deps);
  await app.ready();
  return {
    app,
    deps,
    settings,
    dir,
    async close() {
      await app.close();
      await deps.close();
      if (kind === 'postgres') await dropSchema(schema);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves when the deps' Redis connections are up (the first requests race the connect). */
export async function waitReady(h: Harness, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await h.app.inject({ method: 'GET', url: '/readyz' });
    if (res.statusCode === 200) return;
    if (Date.now() > until) throw new Error(`not ready: ${res.body}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const tinySynthetic = { dataset: { type: 'synthetic', classes: 2, samplesPerClass: 2 } };
