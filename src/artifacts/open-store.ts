// The one place that turns settings into an artifact store (ARTIFACT_STORE: fs | postgres).
import type { Settings } from '../config/settings.js';
import { parseDatabaseUrl } from '../db/database-url.js';
import type { ArtifactStore } from './artifact-store.js';
import { FsArtifactStore } from './fs-store.js';
import { PostgresArtifactStore } from './postgres-store.js';

export function openArtifactStore(settings: Pick<Settings, 'artifactStore' | 'artifactsDir' | 'databaseUrl'>): ArtifactStore {
  if (settings.artifactStore === 'fs') return new FsArtifactStore(settings.artifactsDir);
  const target = parseDatabaseUrl(settings.databaseUrl);
  // loadSettings already refuses this combination; a hand-built Settings could still carry it.
  if (target.provider !== 'postgres') throw new Error('ARTIFACT_STORE=postgres needs a PostgreSQL DATABASE_URL');
  return new PostgresArtifactStore(target.connectionString, target.schema);
}
