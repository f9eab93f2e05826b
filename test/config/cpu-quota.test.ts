// TRAIN_THREADS's default under a CPU quota (src/config/cpu-quota.ts): the quota's cores, not the
// host's, read from cgroup v2 or v1 files as containers and Kubernetes lay them out, and in a real
// cgroup where this machine lets the test make one.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { cgroupPaths, coresOfCpuMax, cpuQuotaCores, usableCores } from '../../src/config/cpu-quota.js';
import { assertBuilt } from '../integration/worker-process.js';

const files = (map: Record<string, string>) => (file: string) => map[file] ?? null;

describe('CPU quota', () => {
  it('reads cpu.max and the cgroup lines as the kernel writes them', () => {
    expect(coresOfCpuMax('200000 100000\n')).toBe(2);
    expect(coresOfCpuMax('50000 100000')).toBe(0.5);
    expect(coresOfCpuMax('max 100000\n')).toBeNull();
    expect(cgroupPaths('0::/kubepods.slice/pod1/cri-abc\n')).toEqual({ unified: '/kubepods.slice/pod1/cri-abc' });
    expect(cgroupPaths('12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n')).toEqual({ unified: '/', cpu: '/docker/abc' });
  });

  it("takes the smallest quota on the process's cgroup and its ancestors, v2 or v1, else none", () => {
    // Kubernetes on cgroup v2: a 2-CPU container limit under a 4-CPU pod limit.
    const k8s = files({
      '/proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
      '/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': '200000 100000\n',
      '/sys/fs/cgroup/kubepods/pod1/cpu.max': '400000 100000\n',
      '/sys/fs/cgroup/kubepods/cpu.max': 'max 100000\n',
    });
    expect(cpuQuotaCores(k8s)).toBe(2);
    // `docker run --cpus=1.5` with its own cgroup namespace: the container's cgroup is the root.
    expect(cpuQuotaCores(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '150000 100000\n' }))).toBe(1.5);
    // cgroup v1 without a namespace: the host's path in /proc/self/cgroup, the container's files at the mount's root.
    const v1 = files({
      '/proc/self/cgroup': '4:cpu,cpuacct:/docker/abc\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '300000\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(cpuQuotaCores(v1)).toBe(3);
    expect(
      cpuQuotaCores(
        files({ '/proc/self/cgroup': '4:cpu,cpuacct:/\n', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' }),
      ),
    ).toBeNull();
    expect(cpuQuotaCores(files({}))).toBeNull();
    // Whole cores, at least one, never more than the CPUs the process may run on.
    expect([usableCores(64, 2), usableCores(64, 1.5), usableCores(64, 0.5), usableCores(2, 8), usableCores(8, null)]).toEqual([2, 1, 1, 2, 8]);
  });

  // A real cgroup v1 cpu controller, where the test may make a group (root, as on these machines).
  const v1Root = '/sys/fs/cgroup/cpu';
  const canMakeGroup =
    os.availableParallelism() >= 2 &&
    fs.existsSync(`${v1Root}/cgroup.procs`) &&
    (() => {
      try {
        fs.accessSync(v1Root, fs.constants.W_OK);
        return true;
      } catch {
        return false;
      }
    })();

  it.skipIf(!canMakeGroup)('gives a worker in a one-CPU quota one training thread on a machine of more cores', () => {
    assertBuilt();
    const group = `${v1Root}/qatserve-test-${process.pid}`;
    fs.mkdirSync(group);
    try {
      fs.writeFileSync(`${group}/cpu.cfs_period_us`, '100000');
      fs.writeFileSync(`${group}/cpu.cfs_quota_us`, '100000');
      const script = "import('./dist/config/settings.js').then((m) => console.log(m.loadSettings({}).trainThreads))";
      const run = (inGroup: boolean) =>
        execFileSync('sh', ['-c', `${inGroup ? `echo $$ > ${group}/cgroup.procs && ` : ''}exec node -e "${script}"`], { encoding: 'utf8' }).trim();
      expect(run(false)).toBe(String(usableCores()));
      expect(run(true)).toBe('1');
    } finally {
      fs.rmdirSync(group);
    }
  });
});
