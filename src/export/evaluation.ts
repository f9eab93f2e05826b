// The evaluation a model's manifest carries, and the pure functions that summarise a confusion
// matrix into it. Plain data and zod, so the API, the exporter and `qatserve eval` share it.
//
// A dense confusion matrix has classes² counts: a 1,000-class job wrote an 11 MB manifest that no
// server would read (the model never served), and its 1,000,000 cells overflowed the dashboard's
// and the CLI's Math.max(...cells). So the matrix is kept only up to MAX_MATRIX_CLASSES classes;
// every evaluation also lists the most frequent mistakes, whose size does not grow with the classes.
import { z } from 'zod';

/** Largest class count whose evaluation keeps the dense confusion matrix (10,000 cells). */
export const MAX_MATRIX_CLASSES = 100;
/** How many of the most frequent mistakes an evaluation lists. */
export const TOP_CONFUSIONS = 100;

export const ConfusionCount = z.object({
  actual: z.number().int().min(0).describe('Index of the true class in `classes`.'),
  predicted: z.number().int().min(0).describe('Index of the class the model answered.'),
  count: z.number().int().min(1).describe('Validation images of `actual` answered as `predicted`.'),
});
export type ConfusionCount = z.infer<typeof ConfusionCount>;

/**
 * The export's final evaluation of the int8 file (run by ONNX Runtime) on the whole validation
 * split; GET /v1/models/:id/evaluation answers it.
 */
export const ModelEvaluation = z.object({
  images: z.number().int().min(0),
  top1: z.number().min(0).max(1),
  top5: z.number().min(0).max(1),
  /** Per class, in `classes` order: share of its images predicted as it (null: no images). */
  perClassTop1: z.array(z.number().min(0).max(1).nullable()),
  /** Per class, in `classes` order: its validation images. */
  perClassImages: z.array(z.number().int().min(0)),
  /** confusion[true class][predicted class]: image counts; null above MAX_MATRIX_CLASSES classes. */
  confusion: z.array(z.array(z.number().int().min(0))).nullable(),
  /** The most frequent mistakes (true class != predicted), most images first, at most TOP_CONFUSIONS. */
  topConfusions: z.array(ConfusionCount),
});
export type ModelEvaluation = z.infer<typeof ModelEvaluation>;

/**
 * An evaluation as a manifest stores it. Manifests written before the thirtieth session lack
 * perClassImages and topConfusions and always hold the dense matrix, whatever the class count;
 * completeEvaluation derives the rest.
 */
export const StoredEvaluation = ModelEvaluation.extend({
  perClassImages: ModelEvaluation.shape.perClassImages.optional(),
  topConfusions: ModelEvaluation.shape.topConfusions.optional(),
});
export type StoredEvaluation = z.infer<typeof StoredEvaluation>;

/** What is wrong with a stored evaluation of a `classes`-class model, or null. */
export function evaluationProblem(e: StoredEvaluation, classes: number): string | null {
  const perClass = (xs: unknown[] | null | undefined) => xs === null || xs === undefined || xs.length === classes;
  if (!perClass(e.perClassTop1) || !perClass(e.perClassImages) || !perClass(e.confusion) || e.confusion?.some((row) => row.length !== classes)) {
    return `perClassTop1, perClassImages and confusion must have one entry per class (${classes})`;
  }
  if (e.confusion === null && (!e.perClassImages || !e.topConfusions))
    return 'an evaluation without the confusion matrix needs perClassImages and topConfusions';
  if (e.topConfusions?.some((c) => c.actual >= classes || c.predicted >= classes || c.actual === c.predicted)) {
    return `topConfusions must name two different classes below ${classes}`;
  }
  return null;
}

/** The `limit` largest off-diagonal cells, most images first (ties: lower true class, then predicted). */
export function topConfusionsOf(confusion: number[][], limit = TOP_CONFUSIONS): ConfusionCount[] {
  const cells: ConfusionCount[] = [];
  confusion.forEach((row, actual) => {
    for (let predicted = 0; predicted < row.length; predicted++) {
      if (predicted !== actual && row[predicted] > 0) cells.push({ actual, predicted, count: row[predicted] });
    }
  });
  cells.sort((a, b) => b.count - a.count || a.actual - b.actual || a.predicted - b.predicted);
  return cells.slice(0, limit);
}

/** Everything an evaluation says about its classes, from the full confusion matrix. */
export function summariseConfusion(confusion: number[][]): Pick<ModelEvaluation, 'perClassTop1' | 'perClassImages' | 'confusion' | 'topConfusions'> {
  const perClassImages = confusion.map((row) => row.reduce((a, b) => a + b, 0));
  return {
    perClassTop1: confusion.map((row, c) => (perClassImages[c] ? row[c] / perClassImages[c] : null)),
    perClassImages,
    confusion: confusion.length <= MAX_MATRIX_CLASSES ? confusion.map((row) => [...row]) : null,
    topConfusions: topConfusionsOf(confusion),
  };
}

/** A stored evaluation in today's shape: an older manifest's dense matrix summarised as a new one's. */
export function completeEvaluation(e: StoredEvaluation): ModelEvaluation {
  const { perClassImages, topConfusions } = e;
  if (perClassImages && topConfusions) return { ...e, perClassImages, topConfusions };
  // Written before both existed, so with the dense matrix (evaluationProblem, run by the manifest's
  // schema, refuses an evaluation that has neither).
  return { ...e, ...summariseConfusion(e.confusion!), perClassTop1: e.perClassTop1 };
}
