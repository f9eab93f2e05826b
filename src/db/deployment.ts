// The deployment id: one row written when the database is first migrated (src/db/migrate.ts).
// Processes that share a database form one deployment; the default queue prefix and with it the
// cancel channel derive from the id, so two deployments sharing one Redis never see each other's
// queue entries, and a worker can name both sides when a foreign entry reaches it anyway.
import type { Settings } from '../config/settings.js';
import type { Prisma } from './database.js';

export class DeploymentError extends Error {
  readonly code = 'DEPLOYMENT_UNKNOWN';
}

export const defaultQueuePrefix = (deploymentId: string) => `qatserve-${deploymentId}`;

export async function readDeploymentId(prisma: Prisma): Promise<string> {
  const row = await prisma.deployment.findFirst({ orderBy: { createdAt: 'asc' } });
  if (!row) throw new DeploymentError('the database has no deployment id: run `qatserve migrate` first');
  return row.id;
}

/** Settings with the deployment id filled in, and the queue prefix derived from it unless set explicitly. */
export function bindDeployment(settings: Settings, deploymentId: string): Settings {
  return {
    ...settings,
    deploymentId,
    queuePrefix: settings.queuePrefixExplicit ? settings.queuePrefix : defaultQueuePrefix(deploymentId),
  };
}

/** The deployment id of settings that went through bindDeployment (a programming error otherwise). */
export function requireDeployment(settings: Settings): { deploymentId: string; queuePrefix: string } {
  if (!settings.deploymentId) throw new DeploymentError('settings are not bound to a deployment (bindDeployment)');
  return { deploymentId: settings.deploymentId, queuePrefix: settings.queuePrefix };
}
