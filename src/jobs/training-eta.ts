// When a run's training should end: the pace of its steps since it (re)started, carried on to its
// last step. The evaluations between epochs fall within that pace (an epoch's steps, then its
// evaluation), so after the first epoch the estimate includes them; before it, it is early by one
// evaluation per epoch left. The final evaluation and the export come after.

/** A run of a job: when it (re)started training, and at which step. */
export interface RunStart {
  at: number;
  step: number;
}

/** When step `totalSteps` should be done (epoch ms); null before the run's first step and from its last. */
export function trainingEndsAt(run: RunStart, now: number, step: number, totalSteps: number): number | null {
  const done = step - run.step;
  if (done <= 0 || step >= totalSteps) return null;
  return Math.round(now + ((now - run.at) / done) * (totalSteps - step));
}
