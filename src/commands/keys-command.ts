// `qatserve keys`: API keys from the command line, straight against the database (DATABASE_URL),
// so the first admin key can be made before the server ever starts.
//   qatserve keys create --name NAME --scopes predict,train,admin   the key is the last stdout line
//   qatserve keys list [--json]
//   qatserve keys revoke NAME [--cancel-jobs]
import { parseArgs } from 'node:util';
import { KeyError, KeyStore, type ApiKeyInfo } from '../auth/key-store.js';
import { KEY_CACHE_MS } from '../auth/auth-policy.js';
import { SCOPES } from '../auth/scopes.js';
import { openDatabase } from '../db/database.js';
import { requestCancel, revokedKeyJobs } from '../jobs/job-lifecycle.js';

export const KEYS_USAGE = `usage: qatserve keys <command>
  create --name NAME --scopes ${SCOPES.join(',')}   a new key, printed once (the last line on stdout)
  list [--json]                                  every key: name, prefix, scopes, created, last used, revoked
  revoke NAME [--cancel-jobs]                    the key stops working (within ${KEY_CACHE_MS / 1000} s on running servers);
                                                 --cancel-jobs also cancels the jobs it posted that have not finished`;

export class KeysCommandError extends Error {
  readonly code = 'KEYS_USAGE';
}

const day = (d: Date | null) => (d ? d.toISOString().replace('T', ' ').slice(0, 19) : '-');

export function formatKeyTable(keys: ApiKeyInfo[]): string {
  const rows = [['NAME', 'PREFIX', 'SCOPES', 'CREATED', 'LAST USED', 'REVOKED']];
  for (const k of keys) rows.push([k.name, k.prefix, k.scopes.join(','), day(k.createdAt), day(k.lastUsedAt), day(k.revokedAt)]);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) =>
      r
        .map((v, c) => v.padEnd(widths[c]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Runs one keys subcommand; `out` receives stdout lines. Returns the process exit code. */
export async function runKeysCommand(
  args: string[],
  databaseUrl: string,
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      scopes: { type: 'string' },
      json: { type: 'boolean', default: false },
      'cancel-jobs': { type: 'boolean', default: false },
    },
  });
  const db = openDatabase(databaseUrl);
  try {
    const store = new KeyStore(db.prisma);
    if (sub === 'create') {
      if (!values.name || !values.scopes) throw new KeysCommandError(`keys create needs --name and --scopes\n${KEYS_USAGE}`);
      const { key, info } = await store.create(values.name, values.scopes);
      out(`created key "${info.name}" with scopes ${info.scopes.join(', ')} (prefix ${info.prefix}).`);
      out('It is shown this once and stored only as a hash: keep it now. Send it as "Authorization: Bearer <key>".');
      out(key);
      return 0;
    }
    if (sub === 'list') {
      const keys = await store.list();
      out(values.json ? JSON.stringify(keys) : keys.length ? formatKeyTable(keys) : 'no keys (auth is off on a loopback HOST until one is created)');
      return 0;
    }
    if (sub === 'revoke') {
      const name = positionals[0] ?? values.name;
      if (!name) throw new KeysCommandError(`keys revoke needs a key name\n${KEYS_USAGE}`);
      const info = await store.revoke(name);
      const held = info.scopes.includes('admin') ? '; models of its jobs that have not finished yet will serve only once an admin promotes them' : '';
      out(`revoked key "${info.name}" (prefix ${info.prefix}); running servers refuse it within ${KEY_CACHE_MS / 1000} s${held}`);
      // The database only: a queued job's queue entry is skipped by the worker that takes it, a
      // running job's worker sees the cancel in the job's row at its next step.
      const { cancelled, goingOn: left } = await revokedKeyJobs(db.prisma, info.id, values['cancel-jobs'] ? (id) => requestCancel(db.prisma, id) : undefined);
      if (cancelled.length) {
        out(
          `cancelled ${cancelled.length} of its jobs (queued ones at once; running ones stop at their next step, keeping a checkpoint): ${cancelled.join(', ')}`,
        );
      }
      if (left.length) {
        const running = left.filter((j) => j.status === 'running').length;
        out(
          `${left.length} job(s) it posted go on (${left.length - running} queued, ${running} running): ` +
            `\`qatserve keys revoke ${info.name} --cancel-jobs\` cancels them, or cancel each with POST /v1/jobs/<id>/cancel`,
        );
      }
      return 0;
    }
    throw new KeysCommandError(KEYS_USAGE);
  } catch (err) {
    if (err instanceof KeyError || err instanceof KeysCommandError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    await db.close();
  }
}
