// An fs artifact store beside a PostgreSQL database works only when every machine mounts the same
// ARTIFACTS_DIR: `qatserve api` says so at start (and `qatserve worker`, through the same
// function), and says nothing with the default store.
import { afterAll, describe, expect, it } from 'vitest';
import { artifactStoreWarning } from '../../src/artifacts/open-store.js';
import { loadSettings } from '../../src/config/settings.js';
import { dropSchema, pgUrl, uniqueSchema } from '../db/test-databases.js';
import { apiEnv, startApi } from './api-process.js';

describe('the fs artifact store beside PostgreSQL', () => {
  const schemas: string[] = [];
  afterAll(async () => {
    for (const s of schemas) await dropSchema(s);
  });

  it('is named in a warning only when ARTIFACT_STORE=fs is chosen with a PostgreSQL database', () => {
    const pg = 'postgresql://u@h/db';
    expect(artifactStoreWarning(loadSettings({ DATABASE_URL: pg, ARTIFACT_STORE: 'fs' }))).toMatch(/must mount the same ARTIFACTS_DIR/);
    expect(artifactStoreWarning(loadSettings({ DATABASE_URL: pg }))).toBeNull();
    expect(artifactStoreWarning(loadSettings({}))).toBeNull();
  });

  it('makes `qatserve api` log it once at start, at warn level; the default store logs nothing', async () => {
    for (const store of ['fs', undefined]) {
      const schema = uniqueSchema('storewarn');
      schemas.push(schema);
      const api = await startApi(apiEnv('storewarn', { DATABASE_URL: pgUrl(schema), ...(store ? { ARTIFACT_STORE: store } : {}) }));
      try {
        const lines = api
          .log()
          .split('\n')
          .filter((l) => l.includes('ARTIFACT_STORE=fs with a PostgreSQL database'));
        expect(lines, String(store)).toHaveLength(store ? 1 : 0);
        if (store) expect(JSON.parse(lines[0]).level).toBe(40);
      } finally {
        await api.stop();
      }
    }
  });
});
