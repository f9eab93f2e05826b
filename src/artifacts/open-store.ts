// The one place that turns settings into an artifact store (ARTIFACT_STORE: fs | postgres).
import type { Settings } from '../config/settings.js';
import { isPostgresUrl, parseDatabaseUrl } from '../db/database-url.js';
import type { ArtifactStore } from './artifact-store.js';
import { FsArtifactStore } from './fs-store.js';
import { CHUNK_BYTES, PostgresArtifactStore } from './postgres-store.js';

export function openArtifactStore(settings: Pick<Settings, 'artifactStore' | 'artifactsDir' | 'databaseUrl' | 'databaseTimeouts'>): ArtifactStore {
  if (settings.artifactStore === 'fs') return new FsArtifactStore(settings.artifactsDir);
  const target = parseDatabaseUrl(settings.databaseUrl);
  // loadSettings already refuses this combination; a hand-built Settings could still carry it.
  if (target.provider !== 'postgres') throw new Error('ARTIFACT_STORE=postgres needs a PostgreSQL DATABASE_URL');
  return new PostgresArtifactStore(target.connectionString, target.schema, CHUNK_BYTES, settings.databaseTimeouts);
}

/**
 * What an operator should hear at start: an fs store beside a PostgreSQL database (processes that
 * share it are often on other machines, which see none of this store's files unless ARTIFACTS_DIR
 * is one mount). Null when nothing needs saying.
 */
export function artifactStoreWarning(settings: Pick<Settings, 'artifactStore' | 'databaseUrl'>): string | null {
  if (settings.artifactStore !== 'fs' || !isPostgresUrl(settings.databaseUrl)) return null;
  return 'ARTIFACT_STORE=fs with a PostgreSQL database: every API and worker machine must mount the same ARTIFACTS_DIR, or models and checkpoints written on one machine will not load on another (unset ARTIFACT_STORE keeps them in PostgreSQL)';
}
