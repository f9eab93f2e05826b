// `qatserve serve` as a user runs it: the built CLI in a child process (API plus one worker child),
// on its embedded defaults in an empty directory. Shared by the end-to-end tests.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
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
 * The command that runs `argv` in a private mount namespace, after the shell commands `mounts` (a
 * mount made there exists only for that process and vanishes with it). Needs root and unshare(1):
 * see canUnshareMounts. With no `argv`, a prefix: the command follows.
 */
export function inOwnMounts(mounts: string[], argv: string[] = []): string[] {
  return ['unshare', '--mount', 'sh', '-c', [...mounts, 'exec "$@"'].join(' && '), 'sh', ...argv];
}

/** What makes a container's read-only root filesystem (`docker run --read-only -v data:/data`): `/` read-only, `writable` excepted. */
const readOnlyRoot = (writable: string) => ['mount --make-rprivate /', `mount --bind '${writable}' '${writable}'`, 'mount -o remount,bind,ro /'];

/** The command that runs `argv` as a container with a read-only root filesystem does, only `writable` writable. */
export const withReadOnlyRoot = (writable: string, argv: string[]): string[] => inOwnMounts(readOnlyRoot(writable), argv);

/** Whether this process may make the mount namespaces of withReadOnlyRoot (root, as CI runs). */
export const canUnshareMounts = (): boolean => spawnSync('unshare', ['--mount', 'true']).status === 0;

/** Whether this process may also loop-mount an ext4 image there (see ext4Disk). */
export function canMountExt4(): boolean {
  return canUnshareMounts() && spawnSync('mkfs.ext4', ['-V']).status === 0 && fs.existsSync('/sys/fs/ext4');
}

/**
 * A new ext4 image of `mib` MiB at `image`, and the command that mounts it on `dir` (a shell word:
 * quoted, or a variable) as Debian and most clouds mount their disks: errors=remount-ro, read-only
 * after the first disk error (see failDisk).
 */
export function ext4Disk(image: string, mib: number, dir: string): string {
  fs.mkdirSync(path.dirname(image), { recursive: true });
  fs.writeFileSync(image, '');
  fs.truncateSync(image, mib * 2 ** 20);
  execFileSync('mkfs.ext4', ['-q', image]);
  return `mount -o loop,errors=remount-ro '${image}' ${dir}`;
}

/**
 * Makes the ext4 disk process `pid` has mounted on `dir` report a disk error, as the kernel does
 * for a failed write (/sys/fs/ext4/<device>/trigger_fs_error): mounted errors=remount-ro, it turns
 * read-only under its open files.
 */
export function failDisk(pid: number, dir: string): void {
  const mount = fs
    .readFileSync(`/proc/${pid}/mounts`, 'utf8')
    .split('\n')
    .find((m) => m.split(' ')[1] === dir);
  if (!mount) throw new Error(`process ${pid} has nothing mounted on ${dir}`);
  fs.writeFileSync(`/sys/fs/ext4/${path.basename(mount.split(' ')[0])}/trigger_fs_error`, '1');
}

/**
 * Starts `qatserve serve` in `cwd` with no DATABASE_URL/DATA_DIR (the defaults) and waits for /readyz;
 * with `readOnlyRoot`, under withReadOnlyRoot with only its data directory (`cwd/data`) writable,
 * and with `dataDisk` too, that directory on this ext4 image of its own (ext4Disk; failDisk), which is
 * made there: its directory must be one of its own.
 */
export async function startServe(cwd: string, label: string, opts: { readOnlyRoot?: boolean; dataDisk?: string } = {}): Promise<ServeProcess> {
  assertBuilt();
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, ...FAST_QUEUE_ENV, PORT: String(port), HOST: '127.0.0.1', QUEUE_PREFIX: `qs-${label}-${process.pid}` };
  for (const k of ['DATABASE_URL', 'DATA_DIR', 'ARTIFACTS_DIR', 'DATA_ROOT', 'TRAIN_THREADS']) delete env[k];
  const logFile = path.join(cwd, 'serve.log');
  const fd = fs.openSync(logFile, 'w');
  let argv = [process.execPath, CLI, 'serve'];
  if (opts.readOnlyRoot) {
    delete env.TMPDIR; // as in a container, where nothing sets it
    const data = path.join(cwd, 'data');
    fs.mkdirSync(data, { recursive: true });
    // The image's directory stays writable, as the host's disk behind a volume: a loop device
    // holds its file open for writing, and no mount with a writer can turn read-only ("busy").
    const mounts = opts.dataDisk ? [...readOnlyRoot(path.dirname(opts.dataDisk)), ext4Disk(opts.dataDisk, 512, `'${data}'`)] : readOnlyRoot(data);
    argv = inOwnMounts(mounts, argv);
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
