// `qatserve api` as an operator runs it: the built CLI in its own process (so timings measured from
// the test are the server's, not the test's own event loop), on a fresh SQLite directory and a
// queue prefix of its own, talking to the real Redis. Plus `qatserve keys` the same way.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../integration/serve-process.js';
import { assertBuilt, CLI } from '../integration/worker-process.js';

export interface ApiProcess {
  base: string;
  dir: string;
  pid: number;
  env: Record<string, string>;
  /** Everything the process wrote so far. */
  log(): string;
  stop(): Promise<void>;
}

/** A fresh data directory and the settings both `api` and `keys` read. */
export function apiEnv(
  label: string,
  extra: Record<string, string> = {},
  dir = fs.mkdtempSync(path.join(os.tmpdir(), `qatserve-${label}-`)),
): Record<string, string> {
  return {
    DATA_DIR: dir,
    DATABASE_URL: `file:${path.join(dir, 'qatserve.db')}`,
    QUEUE_PREFIX: `qs-${label}-${process.pid}-${Date.now().toString(36)}`,
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    PREDICT_WORKERS: '1',
    ...extra,
  };
}

function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const k of ['ARTIFACTS_DIR', 'DATA_ROOT', 'AUTH', 'RATE_LIMIT_PER_MINUTE']) if (!(k in env)) delete out[k];
  return out;
}

/** Starts `qatserve api` and waits until /healthz answers. */
export async function startApi(env: Record<string, string>): Promise<ApiProcess> {
  assertBuilt();
  const port = await freePort();
  const full = { ...env, PORT: String(port) };
  const logFile = path.join(env.DATA_DIR, `api-${port}.log`);
  const fd = fs.openSync(logFile, 'w');
  const proc = spawn(process.execPath, [CLI, 'api'], { env: childEnv(full), stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const log = () => fs.readFileSync(logFile, 'utf8');
  const host = env.HOST === '0.0.0.0' ? '127.0.0.1' : (env.HOST ?? '127.0.0.1');
  const base = `http://${host}:${port}`;
  for (let i = 0; i < 150; i++) {
    if (proc.exitCode !== null) throw new Error(`qatserve api exited with ${proc.exitCode}:\n${log()}`);
    if (
      await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    ) {
      return {
        base,
        dir: env.DATA_DIR,
        pid: proc.pid!,
        env: full,
        log,
        stop: async () => {
          if (proc.exitCode === null) proc.kill('SIGTERM');
          await exited;
        },
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`qatserve api did not answer /healthz:\n${log()}`);
}

/** Runs the CLI to the end: exit code, stdout, stderr. */
export async function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  assertBuilt();
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { env: childEnv(env), timeout: timeoutMs });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** `qatserve keys create`: the key (the last stdout line). */
export async function createKey(env: Record<string, string>, name: string, scopes: string): Promise<string> {
  const r = await runCli(['keys', 'create', '--name', name, '--scopes', scopes], env);
  if (r.code !== 0) throw new Error(`keys create failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim().split('\n').at(-1)!;
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** One request with an optional JSON body: status, headers, text and the parsed JSON (if it is). */
export async function call(base: string, method: string, url: string, headers: Record<string, string> = {}, body?: unknown) {
  const res = await fetch(`${base}${url}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Absolute paths, connection strings and stack frames: what no error body may hold. */
export function leaks(body: string): string[] {
  const found: string[] = [];
  for (const re of [
    /(?<![\w/])\/(?:home|tmp|root|usr|var|etc|work|srv|opt|data|app)\/[^\s"']*/g,
    /\b(?:postgres|postgresql|redis|file):[^\s"']+/gi,
    /\bat [\w.<>]+ \(/g,
    /[A-Za-z]:\\\\/g,
  ]) {
    for (const m of body.matchAll(re)) found.push(m[0]);
  }
  return found;
}
