// `qatserve serve` as a user runs it: the built CLI in a child process (API plus one worker child),
// on its embedded defaults in an empty directory. Shared by the end-to-end tests.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { JobView } from '../../src/jobs/job-view.js';
import { assertBuilt, CLI, FAST_QUEUE_ENV } from './worker-process.js';

export interface ServeProcess {
  base: string;
  pid: number;
  /** The last lines of the server's log, for assertion messages. */
  log: () => string;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The command that runs `argv` as a container with a read-only root filesystem does (`docker run
 * --read-only -v data:/data`): in a private mount namespace whose root is read-only, `writable`
 * (bind-mounted on itself first) excepted. Needs root and unshare(1): see canUnshareMounts.
 */
export function withReadOnlyRoot(writable: string, argv: string[]): string[] {
  const script = 'mount --make-rprivate / && mount --bind "$0" "$0" && mount -o remount,bind,ro / && exec "$@"';
  return ['unshare', '--mount', 'sh', '-c', script, writable, ...argv];
}

/** Whether this process may make the mount namespaces of withReadOnlyRoot (root, as CI runs). */
export const canUnshareMounts = (): boolean => spawnSync('unshare', ['--mount', 'true']).status === 0;

/**
 * Starts `qatserve serve` in `cwd` with no DATABASE_URL/DATA_DIR (the defaults) and waits for /readyz;
 * with `readOnlyRoot`, under withReadOnlyRoot with only its data directory (`cwd/data`) writable.
 */
export async function startServe(cwd: string, label: string, opts: { readOnlyRoot?: boolean } = {}): Promise<ServeProcess> {
  assertBuilt();
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, ...FAST_QUEUE_ENV, PORT: String(port), HOST: '127.0.0.1', QUEUE_PREFIX: `qs-${label}-${process.pid}` };
  for (const k of ['DATABASE_URL', 'DATA_DIR', 'ARTIFACTS_DIR', 'DATA_ROOT', 'TRAIN_THREADS']) delete env[k];
  const logFile = path.join(cwd, 'serve.log');
  const fd = fs.openSync(logFile, 'w');
  let argv = [process.execPath, CLI, 'serve'];
  if (opts.readOnlyRoot) {
    delete env.TMPDIR; // as in a container, where nothing sets it
    fs.mkdirSync(path.join(cwd, 'data'), { recursive: true });
    argv = withReadOnlyRoot(path.join(cwd, 'data'), argv);
  }
  const proc = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const base = `http://127.0.0.1:${port}`;
  const log = () => fs.readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n');
  for (let i = 0; i < 100; i++) {
    if (
      await fetch(`${base}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    ) {
      return { base, pid: proc.pid!, log, stop: () => (proc.kill('SIGTERM'), exited) };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  proc.kill('SIGKILL');
  throw new Error(`qatserve serve did not become ready:\n${log()}`);
}

/** POSTs a job config; returns its id. */
export async function submitJob(base: string, config: unknown): Promise<string> {
  const res = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(config) });
  if (res.status !== 201) throw new Error(`POST /v1/jobs answered ${res.status}: ${await res.text()}`);
  return JobView.parse(await res.json()).id;
}

/**
 * Polls until the job is succeeded, failed or cancelled (or the time is up: returns the last view);
 * `headers` for an API that wants a key.
 */
export async function waitForJob(base: string, id: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<JobView> {
  let job: JobView | null = null;
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    job = JobView.parse(await (await fetch(`${base}/v1/jobs/${id}`, { headers })).json());
    if (['succeeded', 'failed', 'cancelled'].includes(job.status)) break;
    await new Promise((r) => setTimeout(r, 300));
  }
  return job!;
}

/** How many lines of `log` hold `text`: a message said once per outage, not per attempt. */
export const linesWith = (log: string, text: string): number => log.split('\n').filter((l) => l.includes(text)).length;
