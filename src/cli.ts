#!/usr/bin/env node
// qatserve: one binary.
//   serve    API + one worker process on this machine (starts a redis-server child if needed)
//   api      the HTTP API alone          } to scale out: several machines sharing
//   worker   one training worker alone   } Redis and PostgreSQL
//   migrate  apply the committed database migrations
//   keys     create, list and revoke API keys (src/commands/keys-command.ts)
//   train    train from a config file without the service (see src/commands/train-command.ts)
//   eval     an int8 model on a labelled image folder (src/commands/eval-command.ts)
// Settings come from the environment (src/config/settings.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { defaultTrainThreads, loadSettings, SettingsError, type Settings } from './config/settings.js';
import { databaseWhere, parseDatabaseUrl, postgresServer } from './db/database-url.js';
import { bindDeployment, readDeploymentId } from './db/deployment.js';
import { DatabaseUnavailableError, isDatabaseUnavailable } from './db/db-errors.js';
import { migrate, type MigrateResult } from './db/migrate.js';
import { WorkerSupervisor } from './queue/worker-supervisor.js';

const USAGE = `usage: qatserve <command>
  serve                 API + one worker (PORT, default 3000)
  api                   the HTTP API only
  worker                one training worker only
  migrate               apply database migrations (DATABASE_URL; SQLite ./data/qatserve.db by default)
  keys create --name NAME --scopes predict,train,admin | keys list | keys revoke NAME [--cancel-jobs]
                        API keys (see \`qatserve keys\`)
  train [--config] <config.json|yaml> [--work-dir DIR] [--data-root DIR] [--resume CHECKPOINT_DIR]
                        train without the service
  eval --model <model id | model.onnx> --data <folder> [--json]
                        the int8 model's top-1/top-5, per-class accuracy and confusion on <class>/ folders`;

/** How often a service started before its PostgreSQL asks it again. */
const DATABASE_RETRY_MS = 2000;

/**
 * Migrates once the database answers. A deployment's services start in any order (docker compose,
 * systemd, a fleet's scheduler): a service up before its PostgreSQL, or while it is still starting
 * up, says so once and waits, as a worker does for Redis. It exited instead (a stack for a server
 * still starting up), and without a restart policy stayed down.
 */
async function migrateOnceAnswering(settings: Settings): Promise<MigrateResult> {
  const target = parseDatabaseUrl(settings.databaseUrl);
  let said = false;
  for (;;) {
    try {
      const r = await migrate(settings.databaseUrl, settings.databaseTimeouts.connectMs);
      // Only PostgreSQL is ever waited for (SQLite is a file).
      if (said && target.provider === 'postgres') console.error(`PostgreSQL at ${postgresServer(target.connectionString)} answers`);
      return r;
    } catch (err) {
      if (!(err instanceof DatabaseUnavailableError)) throw err;
      if (!said) console.error(`${err.message}; trying again every ${DATABASE_RETRY_MS / 1000} s until it answers`);
      said = true;
      await new Promise((r) => setTimeout(r, DATABASE_RETRY_MS));
    }
  }
}

/**
 * Migrates, then binds the settings to the database's deployment (queue prefix, cancel channel).
 * Services (`wait`) wait for a database that does not answer yet; one-off commands say so and exit.
 */
async function runMigrations(settings: Settings, { wait }: { wait: boolean }): Promise<Settings> {
  const r = wait ? await migrateOnceAnswering(settings) : await migrate(settings.databaseUrl, settings.databaseTimeouts.connectMs);
  // Where, too: a `keys create` run from another directory makes (and migrates) a database of its own.
  if (r.applied.length) console.error(`migrated ${r.provider} ${databaseWhere(parseDatabaseUrl(settings.databaseUrl))}: applied ${r.applied.join(', ')}`);
  return bindDeployment(settings, r.deploymentId);
}

/** For a process that must not migrate (serve's worker child): read the deployment id only. */
async function boundSettings(settings: Settings): Promise<Settings> {
  const { openDatabase } = await import('./db/database.js');
  const db = openDatabase(settings.databaseUrl, settings.databaseTimeouts);
  try {
    return bindDeployment(settings, await readDeploymentId(db.prisma));
  } finally {
    await db.close();
  }
}

function redisAnswers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** With REDIS_URL unset and nothing on 127.0.0.1:6379, start redis-server from PATH as a child. */
async function ensureRedis(settings: Settings): Promise<ChildProcess | null> {
  if (settings.redisUrlExplicit || (await redisAnswers('127.0.0.1', 6379))) return null;
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', '6379', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const started = await new Promise<boolean>((resolve) => {
    child.once('error', () => resolve(false)); // ENOENT: not on PATH
    const until = Date.now() + 5000;
    const poll = async () => {
      if (await redisAnswers('127.0.0.1', 6379, 200)) return resolve(true);
      if (Date.now() > until || child.exitCode !== null) return resolve(false);
      setTimeout(() => void poll(), 100);
    };
    void poll();
  });
  if (!started) {
    child.kill();
    console.error(
      'qatserve needs Redis and found none on 127.0.0.1:6379, and could not start `redis-server` from PATH.\n' +
        'Install it (Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`),\n' +
        'run one with Docker (`docker run -p 6379:6379 redis:7`), or set REDIS_URL to an existing server.',
    );
    process.exit(1);
  }
  console.error('started redis-server on 127.0.0.1:6379 as a child process');
  return child;
}

/** SIGTERM to `child` (serve's redis-server), and its exit awaited for up to 5 s. */
async function stopChild(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
}

/** Bytes from which glibc serves an allocation with its own mapping, given back when freed (see serve). */
const WORKER_MMAP_THRESHOLD = '65536';

async function serve(unbound: Settings): Promise<void> {
  const redis = await ensureRedis(unbound);
  // Until the API listens, a start that fails or a signal (serve may wait minutes for PostgreSQL)
  // must not leave the redis-server child running: it outlived serve before.
  const leaveNoChild = () => void stopChild(redis).then(() => process.exit(1));
  process.once('SIGTERM', leaveNoChild);
  process.once('SIGINT', leaveNoChild);
  const settings = await runMigrations(unbound, { wait: true }).catch(async (err: unknown) => {
    await stopChild(redis);
    throw err;
  });
  const cli = fileURLToPath(import.meta.url);
  // Crashed workers come back with exponential, capped backoff; /readyz and /metrics show it.
  const worker = new WorkerSupervisor(() =>
    spawn(process.execPath, [cli, 'worker'], {
      stdio: 'inherit',
      // Training leaves a core to /v1/predict unless TRAIN_THREADS says otherwise.
      env: {
        ...process.env,
        QATSERVE_SKIP_MIGRATE: '1',
        // glibc kept what the worker's threads had freed (ONNX Runtime, libvips, the training thread)
        // in its arenas: idle after a 1.0@224 job it held 361 MB, 143 MB with large blocks mmapped.
        MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? WORKER_MMAP_THRESHOLD,
        TRAIN_THREADS: String(unbound.trainThreadsExplicit ? unbound.trainThreads : defaultTrainThreads('serve')),
      },
    }),
  );
  const { runApi } = await import('./api/server.js');
  const api = await runApi(settings, { handleSignals: false, workerStatus: () => worker.status() }).catch(async (err: unknown) => {
    await stopChild(redis); // the API refused to start (e.g. no API key on a public HOST): leave no child behind
    throw err;
  });
  process.off('SIGTERM', leaveNoChild);
  process.off('SIGINT', leaveNoChild);
  worker.start();
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.all([api.close(), worker.stop('SIGTERM')]);
    await stopChild(redis);
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
}

interface TrainArgs {
  configPath: string;
  workDir?: string;
  dataRoot?: string;
  /** A checkpoint directory to continue from. */
  resume?: string;
}

function parseTrainArgs(args: string[]): TrainArgs {
  const out: Partial<TrainArgs> = {};
  const value = (i: number, flag: string) => {
    const v = args[i];
    if (v === undefined || v.startsWith('--')) throw new SettingsError(`${flag} needs a value\n${USAGE}`);
    return v;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--config') out.configPath = value(++i, a);
    else if (a === '--work-dir') out.workDir = value(++i, a);
    else if (a === '--data-root') out.dataRoot = value(++i, a);
    else if (a === '--resume') out.resume = value(++i, a);
    else if (a.startsWith('--')) throw new SettingsError(`unknown option ${a}\n${USAGE}`);
    else out.configPath = a;
  }
  if (!out.configPath) throw new SettingsError(`train needs a config file\n${USAGE}`);
  return out as TrainArgs;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const settings = loadSettings();
  switch (command) {
    case 'serve':
      return serve(settings);
    case 'api': {
      const bound = await runMigrations(settings, { wait: true });
      const { runApi } = await import('./api/server.js');
      await runApi(bound);
      return;
    }
    case 'worker': {
      const bound = settings.skipMigrate ? await boundSettings(settings) : await runMigrations(settings, { wait: true });
      const { runWorker } = await import('./queue/worker.js');
      const worker = await runWorker(bound);
      const stop = () => void worker.stop().then(() => process.exit(0));
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      return;
    }
    case 'migrate': {
      const r = await migrate(settings.databaseUrl, settings.databaseTimeouts.connectMs);
      console.log(
        `${r.provider} ${databaseWhere(parseDatabaseUrl(settings.databaseUrl))}: applied ${r.applied.length} (${r.applied.join(', ') || 'none'}), already applied ${r.alreadyApplied.length}; deployment ${r.deploymentId}`,
      );
      return;
    }
    case 'keys': {
      await runMigrations(settings, { wait: false });
      const { runKeysCommand } = await import('./commands/keys-command.js');
      process.exitCode = await runKeysCommand(rest, settings.databaseUrl);
      return;
    }
    case 'eval': {
      const { runEvalCommand } = await import('./commands/eval-command.js');
      process.exitCode = await runEvalCommand(rest, settings);
      return;
    }
    case 'train': {
      const args = parseTrainArgs(rest);
      // Imported only here: the other commands never load tfjs.
      const { runTrainCommand } = await import('./commands/train-command.js');
      await runTrainCommand(args, settings); // its data root defaults to DATA_ROOT, else the working directory
      return;
    }
    default:
      console.error(USAGE);
      process.exit(command ? 2 : 0);
  }
}

/**
 * Codes of errors whose message is the whole story for an operator (a key to create, a config
 * file to fix, a directory to make writable): printed alone, without a stack. Matched by code, as
 * `train`'s module is loaded only for that command.
 */
const SAID_CODES = new Set([
  'AUTH_SETUP',
  'CONFIG_UNREADABLE',
  'CONFIG_INVALID',
  'WORK_DIR_UNUSABLE',
  'TRAINING_FAILED',
  'DATABASE_FILE_UNUSABLE',
  'DATABASE_REFUSED',
  'MIGRATION_UNKNOWN',
  'MIGRATION_CHECKSUM_MISMATCH',
]);

main(process.argv.slice(2)).catch((err) => {
  // What an operator can act on is said in its message; anything else keeps its stack.
  const code = (err as { code?: unknown } | null)?.code;
  const said = err instanceof SettingsError || (typeof code === 'string' && SAID_CODES.has(code)) || isDatabaseUnavailable(err);
  console.error(said ? (err as Error).message : err);
  process.exit(1);
});
