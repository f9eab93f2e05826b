// Node's event-loop delay probe (perf_hooks.monitorEventLoopDelay) is a timer due every period; each
// sample is the time between two of its firings, so an idle loop reads as one period. What exceeds
// the period is the lag: the time the loop was busy when the timer was due.

/** A probe sample (ns) less the probe's period, in ms; never below 0. */
export function lagBeyondPeriodMs(sampleNs: number, periodMs: number): number {
  return Math.max(0, sampleNs / 1e6 - periodMs);
}
