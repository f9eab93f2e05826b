// The training config: the one source of truth for what a job may ask for. The API validates
// requests with it, the database stores its resolved output, the trainer reads it, and the OpenAPI
// components are generated from it. Every field but the dataset has a default, so `{ dataset: {...} }` alone is valid.
//
// Objects are strict: an unknown key is an error that names it, rather than a silently ignored typo.
// zod 4's `.prefault({})` (not `.default({})`) makes an omitted section parse `{}` and so fill its
// inner defaults.
import { z } from 'zod';

const positiveInt = z.number().int().positive();

export const SyntheticDataset = z.strictObject({
  type: z.literal('synthetic'),
  /** Number of classes; each class is a distinct learnable pattern. */
  classes: z.number().int().min(2).max(100).default(4),
  /** Training images per class (validation images are extra, see valPerClass). */
  samplesPerClass: z.number().int().min(1).max(10_000).default(64),
  /** Validation images per class. */
  valPerClass: z.number().int().min(1).max(10_000).default(16),
  seed: z.number().int().default(1),
});

export const FashionMnistDataset = z.strictObject({
  type: z.literal('fashion-mnist'),
  /** Training images to use from the fixed 60,000-image train split (balanced over classes). */
  limit: z.number().int().min(10).max(60_000).default(60_000),
  /** Test images to evaluate on from the fixed 10,000-image test split (balanced over classes). */
  testLimit: z.number().int().min(10).max(10_000).default(10_000),
});

export const ImageFolderDataset = z.strictObject({
  type: z.literal('imagefolder'),
  /** Folder under the workers' DATA_ROOT: `<class>/*` or `train|val/<class>/*` (also valid/, test/, Training/, Testing/: see splitLayout). */
  path: z.string().min(1).max(1024),
  /** Fraction held out for validation when the folder has no `val/` (or `test/`) split. */
  valSplit: z.number().min(0.01).max(0.5).default(0.1),
});

export const DatasetConfig = z.discriminatedUnion('type', [SyntheticDataset, FashionMnistDataset, ImageFolderDataset]);

export const ModelConfig = z.strictObject({
  /** Channel multiplier; channels are rounded to multiples of 8 as in the paper. */
  widthMultiplier: z.number().min(0.1).max(2).default(0.35),
  /** Square input side in pixels. */
  inputSize: z.number().int().min(32).max(224).default(32),
  /**
   * Small inputs lose most of their resolution to MobileNetV2's stride-32 stem. `auto` uses
   * stride 1 in the stem and the first stride-2 stage for inputs below 64 (as CIFAR ports do).
   */
  smallInputStem: z.enum(['auto', 'on', 'off']).default('auto'),
  /** Dropout before the classifier, as in the reference model. */
  dropout: z.number().min(0).max(0.9).default(0.2),
});

export const TrainingSection = z.strictObject({
  epochs: z.number().int().min(1).max(1000).default(5),
  batchSize: z.number().int().min(1).max(1024).default(32),
  /**
   * Peak learning rate, reached after warmup, then cosine-decayed to zero. null (the default):
   * 0.4 x batchSize / 256 (see peakLearningRate).
   */
  learningRate: z.number().positive().max(10).nullable().default(null),
  /** Linear warmup from 0 to the peak rate over this many epochs (fractions allowed). */
  warmupEpochs: z.number().min(0).max(100).default(0.3),
  momentum: z.number().min(0).max(0.999).default(0.9),
  weightDecay: z.number().min(0).max(0.1).default(4e-5),
  labelSmoothing: z.number().min(0).max(0.5).default(0.1),
  seed: z.number().int().default(1),
  /** Stop after this many steps in total (the schedule still spans `epochs`). */
  maxSteps: positiveInt.nullable().default(null),
  /** Random crop (pad 4 for inputs below 64, else scale jitter) and horizontal flip. */
  augment: z.boolean().default(true),
  /** A checkpoint is written every epoch; this adds one every N steps as well. */
  checkpointEverySteps: positiveInt.nullable().default(null),
  /**
   * And one once this many minutes of training have passed since the last, so a worker that dies
   * loses at most that much: an epoch of a large job takes hours (null: per epoch and N steps only).
   */
  checkpointEveryMinutes: z.number().positive().max(1440).nullable().default(10),
  /** Checkpoints kept on disk (the newest N). */
  keepCheckpoints: z.number().int().min(1).max(100).default(2),
  /**
   * The validation split is scored after every N epochs, and always at the end: each scoring reads
   * every validation image, and 2,000 at 224 px take about as long as an epoch of 400 training ones.
   */
  evalEveryEpochs: z.number().int().min(1).max(1000).default(1),
});

export const QuantizationSection = z.strictObject({
  enabled: z.boolean().default(true),
  /** Float steps before fake quantization starts; null (the default): delayFraction of the run's steps. */
  delaySteps: z.number().int().min(0).nullable().default(null),
  /**
   * When delaySteps is null: the share of the run's steps trained in float before fake
   * quantization starts. 0.5: float training, then QAT fine-tuning of the trained network.
   */
  delayFraction: z.number().min(0).max(1).default(0.5),
  /** Freeze batch-norm statistics after this many steps (null: never). */
  freezeBnAfterSteps: z.number().int().min(0).nullable().default(null),
  /** Decay of the activation range EMA. */
  emaDecay: z.number().min(0).max(0.99999).default(0.999),
  /**
   * Weight grid per output channel: 7 bits ([-63, 63], ONNX Runtime's "reduce_range") or 8 bits
   * ([-127, 127]). Both are stored as int8. With 7 bits the model runs exactly on ONNX Runtime's
   * fast int8 kernels on every x86 CPU; 8-bit weights overflow the int16 pair sums of x86 CPUs
   * without VNNI and are then stored as uint8 (exact, but about as slow as float).
   */
  weightBits: z.literal([7, 8]).default(7),
});

/**
 * Text without control characters (C0, DEL, C1): PostgreSQL cannot hold a NUL, and none belongs in
 * a name or an id. A range, not \p{Cc}, so it reads the same in every OpenAPI client's regex dialect.
 */
// eslint-disable-next-line no-control-regex -- control characters are what it refuses
export const PRINTABLE = /^[^\u0000-\u001f\u007f-\u009f]*$/;

/** Free text stored in its own column. */
const printable = (s: z.ZodString) => s.regex(PRINTABLE, 'must not contain control characters (NUL, tab, newline, ...)');

export const InitSection = z.strictObject({
  /** Start from an earlier job's newest checkpoint (weights only) instead of from scratch. */
  fromJob: printable(z.string().min(1).max(64)).nullable().default(null),
});

export const TrainingConfig = z.strictObject({
  name: printable(z.string().min(1).max(200)).default('qat-job'),
  dataset: DatasetConfig,
  model: ModelConfig.prefault({}),
  training: TrainingSection.prefault({}),
  quantization: QuantizationSection.prefault({}),
  init: InitSection.prefault({}),
});

/** What a client may send (defaults optional). */
export type TrainingConfigInput = z.input<typeof TrainingConfig>;
/** The resolved config: every default filled. Stored with the job and in every checkpoint. */
export type TrainingConfig = z.output<typeof TrainingConfig>;
export type DatasetConfig = z.output<typeof DatasetConfig>;

/**
 * The peak learning rate of a run: the configured one, or 0.4 x batchSize / 256.
 *
 * Why scaled with the batch: a step's gradient noise shrinks as the batch grows, so the rate that
 * is stable grows with it (the linear scaling rule, Goyal et al. 2017, with warmup). A fixed 0.05
 * was 0.8 per 256 images at batch 16, and float training diverged there (loss 1.4 -> 8.5 within 30
 * steps, issue 9). 0.4 per 256 (0.05 at the default batch 32, 0.025 at 16), with 0.3 epochs of
 * warmup, learns on the synthetic, fashion-mnist and image-folder jobs the README measures.
 */
export function peakLearningRate(training: Pick<TrainingConfig['training'], 'learningRate' | 'batchSize'>): number {
  return training.learningRate ?? (0.4 * training.batchSize) / 256;
}

/** Float steps before fake quantization: delaySteps if set, else delayFraction of `totalSteps`. */
export function quantDelaySteps(q: Pick<TrainingConfig['quantization'], 'delaySteps' | 'delayFraction'>, totalSteps: number): number {
  return q.delaySteps ?? Math.round(q.delayFraction * totalSteps);
}

export function resolveTrainingConfig(input: unknown): TrainingConfig {
  return TrainingConfig.parse(input);
}
