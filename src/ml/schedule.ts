// Learning rate per optimizer step: linear warmup to the peak, then cosine decay to zero at the
// end of the schedule (which always spans the configured epochs, even when maxSteps stops early).

export interface Schedule {
  peak: number;
  warmupSteps: number;
  totalSteps: number;
}

/** LR used for the step with 0-based index `step` (the first step is 0). */
export function lrAt(s: Schedule, step: number): number {
  if (step < s.warmupSteps) return (s.peak * (step + 1)) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const t = Math.min(1, (step - s.warmupSteps) / span);
  return 0.5 * s.peak * (1 + Math.cos(Math.PI * t));
}
