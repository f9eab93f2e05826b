// An event-loop probe (perf_hooks.monitorEventLoopDelay for /metrics, an interval timer for load
// shedding) is a timer due every period; each sample is the time between two of its firings, so an
// idle loop reads as one period. What exceeds it is the lag: the time the loop was busy when it was due.

/** A probe sample (ns) less the probe's period, in ms; never below 0. */
export function lagBeyondPeriodMs(sampleNs: number, periodMs: number): number {
  return Math.max(0, sampleNs / 1e6 - periodMs);
}
