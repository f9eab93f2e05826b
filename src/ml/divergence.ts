// The divergence guard: a run whose loss is not a number, or has climbed far above where it started
// and stays there, is stopped with TRAINING_DIVERGED instead of being exported as a model that
// learned nothing. Pure bookkeeping over the step losses; the trainer feeds it one loss per step.

/** Steps averaged on each side: at least 10, and at least 320 images' worth (noisy small batches). */
export function divergenceWindow(batchSize: number): number {
  return Math.max(10, Math.ceil(320 / batchSize));
}

export class DivergenceGuard {
  private readonly window: number;
  private readonly first: number[] = [];
  private readonly recent: number[] = [];
  private recentSum = 0;
  private firstMean: number | null = null;

  constructor(
    batchSize: number,
    private readonly classes: number,
    private readonly learningRate: number,
  ) {
    this.window = divergenceWindow(batchSize);
  }

  /**
   * Records the loss of step `step` (1-based); returns why the run diverged, or null. Diverged:
   * the loss is not finite, or the mean of the last `window` losses is more than ln(classes) (the
   * loss of a uniform guess) above where the run started, and at least twice it. Where it started
   * is the first window's mean, but no more than ln(classes): a run from scratch starts near a
   * uniform guess, and a first window far above that has already run away (at learning rate 10 the
   * loss went 1.41, 31.9, 264, ... and the next windows stayed below twice the first). A transient
   * spike does not last a whole window.
   */
  observe(loss: number, step: number): string | null {
    if (!Number.isFinite(loss)) {
      return `the loss became ${loss} at step ${step}: training diverged. Lower the learning rate (it was ${fmt(this.learningRate)}; try ${fmt(this.learningRate / 10)})`;
    }
    if (this.firstMean === null) {
      this.first.push(loss);
      if (this.first.length === this.window) this.firstMean = mean(this.first);
      return null;
    }
    this.recent.push(loss);
    this.recentSum += loss;
    if (this.recent.length > this.window) this.recentSum -= this.recent.shift()!;
    if (this.recent.length < this.window) return null;
    const recentMean = this.recentSum / this.window;
    const uniform = Math.log(this.classes);
    const start = Math.min(this.firstMean, uniform);
    const limit = Math.max(2 * start, start + uniform);
    if (recentMean <= limit) return null;
    const started =
      start < this.firstMean
        ? `a uniform guess's ${uniform.toFixed(3)}, below the first ${this.window} steps' ${this.firstMean.toFixed(3)}`
        : `the first ${this.window} steps averaged ${this.firstMean.toFixed(3)}`;
    return (
      `the mean loss of the last ${this.window} steps is ${recentMean.toFixed(3)} at step ${step}, above ${limit.toFixed(3)} ` +
      `(${started}): training diverged. ` +
      `Lower the learning rate (it was ${fmt(this.learningRate)}; try ${fmt(this.learningRate / 10)})`
    );
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (x: number) => Number(x.toPrecision(3)).toString();
