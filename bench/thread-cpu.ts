// CPU time per OS thread of this process (Linux /proc), to see where a run's CPU went: the main
// thread, the step peers and the batch thread are worker threads, V8's GC and compiler helpers
// and libuv's pool have threads of their own. A diagnostic for benches (and test/api/idle-wakeups.test.ts), not for the service.
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux everywhere). */
const USER_HZ = 100;

export interface ThreadCpu {
  tid: number;
  name: string;
  /** User + system seconds since the thread started. */
  seconds: number;
  /**
   * Times the kernel took the CPU from the thread while it could still run (nonvoluntary context
   * switches). Two training threads meet ~120 times a step at 224 px, so each preemption of one
   * can stall both: a count that, unlike img/s, does not drift with this VM's speed.
   */
  preempted: number;
  /** Times the thread went to sleep by itself (voluntary context switches): each ends in a wakeup. */
  slept: number;
}

/** Every live thread of process `pid` (default this one) with its CPU seconds; [] where /proc is missing. */
export function threadCpu(pid: number = process.pid): ThreadCpu[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: ThreadCpu[] = [];
  for (const tid of tids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // ended between the listing and the read
    }
    // "tid (name) state ...": the name may hold spaces and parentheses, so split at the last ')'.
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    const seconds = (Number(fields[11]) + Number(fields[12])) / USER_HZ;
    let status = '';
    try {
      status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    } catch {
      // ended meanwhile: its CPU time still counts
    }
    const switches = (kind: string) => Number(new RegExp(`^${kind}_ctxt_switches:\\s*(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    out.push({ tid: Number(tid), name: stat.slice(stat.indexOf('(') + 1, close), seconds, preempted: switches('nonvoluntary'), slept: switches('voluntary') });
  }
  return out;
}

/** Each thread's CPU seconds, preemptions and sleeps between a snapshot and now. */
export function threadCpuDeltas(before: ThreadCpu[], pid: number = process.pid): ThreadCpu[] {
  const start = new Map(before.map((t) => [t.tid, t]));
  return threadCpu(pid).map((t) => {
    const s = start.get(t.tid);
    return { ...t, seconds: t.seconds - (s?.seconds ?? 0), preempted: t.preempted - (s?.preempted ?? 0), slept: t.slept - (s?.slept ?? 0) };
  });
}

/**
 * Threads' CPU seconds (deltas), busiest first, threads under `minSeconds` left out, with the
 * preemptions of those that were preempted: "main 20.1s/312p, node#41 19.8s/298p, ...".
 */
export function formatThreadCpu(deltas: ThreadCpu[], minSeconds = 0.05, pid: number = process.pid): string {
  return deltas
    .filter((t) => t.seconds >= minSeconds)
    .sort((a, b) => b.seconds - a.seconds)
    .map((t) => `${t.tid === pid ? 'main' : `${t.name}#${t.tid}`} ${t.seconds.toFixed(2)}s${t.preempted ? `/${t.preempted}p` : ''}`)
    .join(', ');
}

/** CPU seconds each thread spent between a snapshot and now, as formatThreadCpu writes them. */
export function threadCpuSince(before: ThreadCpu[], minSeconds = 0.05, pid: number = process.pid): string {
  return formatThreadCpu(threadCpuDeltas(before, pid), minSeconds, pid);
}
