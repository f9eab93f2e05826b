// The cores this process may keep busy. os.availableParallelism() counts the CPUs it may be
// scheduled on (affinity, cpusets) but not a CFS quota: in `docker run --cpus=2`, or under a
// Kubernetes CPU limit, on a 64-core host it reads 64 (libuv 1.46, Node 20). TRAIN_THREADS's
// default then split a step over up to 64 threads that the quota throttles, each holding its own
// wasm heap of the model. Read the quota the way the kernel applies it: the smallest on the
// process's cgroup and its ancestors, cgroup v2 or v1.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Cores a cgroup v2 `cpu.max` allows: "200000 100000" -> 2; "max 100000" (no quota) -> null. */
export function coresOfCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  return coresOf(quota, period ?? '100000');
}

/** Cores a cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` pair allows; a quota of -1 is none. */
export function coresOf(quota: string, period: string): number | null {
  const q = Number(quota.trim());
  const p = Number(period.trim());
  return Number.isFinite(q) && q > 0 && Number.isFinite(p) && p > 0 ? q / p : null;
}

/** The process's cgroup paths from /proc/self/cgroup: the v2 one ("0::/path") and v1's cpu controller's. */
export function cgroupPaths(procSelfCgroup: string): { unified?: string; cpu?: string } {
  const out: { unified?: string; cpu?: string } = {};
  for (const line of procSelfCgroup.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === '') out.unified = m[2];
    else if (m[1].split(',').includes('cpu')) out.cpu = m[2];
  }
  return out;
}

/** `dir` and each folder above it, up to "/". */
function selfAndAncestors(dir: string): string[] {
  const dirs = [path.posix.normalize(dir || '/')];
  while (dirs.at(-1) !== '/') dirs.push(path.posix.dirname(dirs.at(-1)!));
  return dirs;
}

type Read = (file: string) => string | null;

const readOrNull: Read = (file) => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
};

/**
 * The smallest CPU quota on this process's cgroup and its ancestors, in cores; null with none. A
 * container without its own cgroup namespace sees the host's path in /proc/self/cgroup but its own
 * cgroup at the mount's root, which the walk up to "/" reads too.
 */
export function cpuQuotaCores(read: Read = readOrNull): number | null {
  const own = cgroupPaths(read('/proc/self/cgroup') ?? '');
  /** The quotas found on `dir`'s cgroup and every one above it. */
  const along = (dir: string | undefined, coresAt: (dir: string) => number | null) =>
    dir === undefined ? [] : selfAndAncestors(dir).flatMap((d) => coresAt(d) ?? []);
  const quotas = [
    ...along(own.unified, (dir) => {
      const text = read(path.posix.join('/sys/fs/cgroup', dir, 'cpu.max'));
      return text === null ? null : coresOfCpuMax(text);
    }),
    ...['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct'].flatMap((mount) =>
      along(own.cpu, (dir) => {
        const quota = read(path.posix.join(mount, dir, 'cpu.cfs_quota_us'));
        const period = read(path.posix.join(mount, dir, 'cpu.cfs_period_us'));
        return quota === null || period === null ? null : coresOf(quota, period);
      }),
    ),
  ];
  return quotas.length ? Math.min(...quotas) : null;
}

/** The cores to keep busy: those the process may run on, no more than its CPU quota (at least 1). */
export function usableCores(parallelism = os.availableParallelism(), quota = cpuQuotaCores()): number {
  return quota === null ? parallelism : Math.max(1, Math.min(parallelism, Math.floor(quota)));
}
