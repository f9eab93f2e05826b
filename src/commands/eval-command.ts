// `qatserve eval`: the int8 model (ONNX Runtime, as served) over a labelled image folder, with the
// same preprocessing as /v1/predict; prints top-1, top-5, per-class top-1 and the confusion matrix.
//   qatserve eval --model <model id | model.onnx> --data <folder> [--json] [--batch N]
// A model id is looked up in the database (DATABASE_URL) and its files read from the artifact store;
// an .onnx file is run as its manifest.json beside it says (an export directory) or, for a file
// downloaded alone, as its own metadata says (src/export/file-contract.ts). The folder holds
// <class>/*.jpg|png|webp|gif|tif|avif, class names as the model's; images are counted per class.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Settings } from '../config/settings.js';
import { DatasetError, type DataWarning } from '../data/errors.js';
import { readClassFolders } from '../data/image-folder.js';
import { nfc } from '../data/safe-path.js';
import { databaseWhere, parseDatabaseUrl } from '../db/database-url.js';
import { isTableMissing } from '../db/db-errors.js';
import { isDirectory, isFile } from '../file-system.js';
import { EvaluationAccumulator } from '../export/export-job-evaluate.js';
import { readFileContract } from '../export/file-contract.js';
import { MANIFEST_FILE, parseManifest, type FileContract, type ModelManifest } from '../export/manifest.js';
import { MAX_MATRIX_CLASSES, type ModelEvaluation } from '../export/evaluation.js';
import { OnnxRunner } from '../export/verify.js';
import { needsUint8Storage, toUint8WeightStorage } from '../export/weight-storage.js';
import { ModelUnavailableError } from '../serving/errors.js';
import { decodeForModel, rgbToNchw } from '../serving/preprocess.js';

export const EVAL_USAGE = `usage: qatserve eval --model <model id | model.onnx> --data <folder> [--json] [--batch N]
  --model   a model id (from GET /v1/models) or a model.onnx (downloaded, or with its manifest.json beside it)
  --data    a folder of <class>/*.jpg|png|webp|gif|tif|avif, class names as the model's (a job's val/ folder)
  --json    one JSON object on stdout instead of the tables
  --batch   images per ONNX Runtime call (default 16)`;

export class EvalCommandError extends Error {
  constructor(
    readonly code: 'EVAL_USAGE' | 'MODEL_NOT_FOUND' | 'MODEL_MANIFEST_INVALID' | 'DATA_INVALID',
    message: string,
  ) {
    super(message);
    this.name = 'EvalCommandError';
  }
}

export interface EvalModel {
  /** The model id, or the .onnx path given. */
  name: string;
  onnxPath: string;
  /** How to run the file: its manifest, or the same fields from the file's own metadata. */
  contract: ModelManifest | FileContract;
}

export interface LabelledImage {
  file: string;
  label: number;
}

export interface EvalReport extends ModelEvaluation {
  model: string;
  classes: string[];
  /** Files that could not be decoded (not counted in `images`). */
  skipped: string[];
}

/** The model behind `--model`: an .onnx file (with its manifest beside it, or alone), or a model id. */
export async function resolveEvalModel(
  spec: string,
  settings: Pick<Settings, 'databaseUrl' | 'databaseTimeouts' | 'artifactStore' | 'artifactsDir' | 'modelCacheDir' | 'modelCacheMaxBytes'>,
): Promise<EvalModel> {
  const asFile = await isFile(spec);
  if (asFile || spec.endsWith('.onnx')) {
    if (!asFile) throw new EvalCommandError('MODEL_NOT_FOUND', `model file ${spec} does not exist`);
    const manifestPath = path.join(path.dirname(spec), MANIFEST_FILE);
    const raw: unknown = await fs.readFile(manifestPath, 'utf8').then(
      (t) => JSON.parse(t) as unknown,
      () => undefined,
    );
    if (raw === undefined) {
      // A file downloaded alone (GET /v1/models/:id/download): its own metadata says how to run it.
      const { contract, problem } = readFileContract(await fs.readFile(spec));
      if (contract) return { name: spec, onnxPath: spec, contract };
      throw new EvalCommandError(
        'MODEL_NOT_FOUND',
        `${spec} has no readable ${MANIFEST_FILE} beside it, and ${problem}: put its manifest beside it (the "manifest" of GET /v1/models/<id>)`,
      );
    }
    const { manifest, problem } = parseManifest(raw);
    if (!manifest) throw new EvalCommandError('MODEL_MANIFEST_INVALID', `${manifestPath} is not a qatserve model manifest: ${problem}`);
    return { name: spec, onnxPath: spec, contract: manifest };
  }
  if (await isDirectory(spec))
    throw new EvalCommandError('MODEL_NOT_FOUND', `${spec} is a directory: give the model.onnx in it (with its manifest.json beside it)`);
  // A model id is looked up in the service's database. Opened elsewhere (another working
  // directory, so another ./data), SQLite made an empty file there and Prisma said a table is missing.
  const target = parseDatabaseUrl(settings.databaseUrl);
  if (target.provider === 'sqlite' && !(await isFile(target.file)))
    throw new EvalCommandError(
      'MODEL_NOT_FOUND',
      `no file "${spec}", and no database at ${target.file} to look a model id up in: run eval with the service's DATA_DIR (or DATABASE_URL), or give a model.onnx`,
    );
  const { openDatabase } = await import('../db/database.js');
  const { getModel } = await import('../db/model-rows.js');
  const { openArtifactStore } = await import('../artifacts/open-store.js');
  const { ModelFileCache } = await import('../artifacts/model-cache.js');
  const { ModelFiles } = await import('../serving/model-store.js');
  const db = openDatabase(settings.databaseUrl, settings.databaseTimeouts);
  const store = openArtifactStore(settings);
  try {
    const record = await getModel(db.prisma, spec).catch((err: unknown) => {
      if (!isTableMissing(err)) throw err;
      throw new EvalCommandError(
        'MODEL_NOT_FOUND',
        `the database ${databaseWhere(target)} has no qatserve tables: DATABASE_URL (or DATA_DIR) is not the service's, or it was never migrated (qatserve migrate)`,
      );
    });
    if (!record)
      throw new EvalCommandError('MODEL_NOT_FOUND', `no model with id "${spec}" in the database (GET /v1/models lists them), and no file of that name`);
    // The same verified local copy the API serves from (sha256-checked, in MODEL_CACHE_DIR).
    const files = new ModelFiles(new ModelFileCache(store, settings.modelCacheDir, settings.modelCacheMaxBytes));
    return { name: spec, onnxPath: await files.onnx(record), contract: await files.manifest(record) };
  } finally {
    await store.close();
    await db.close();
  }
}

/**
 * `<folder>/<class>/**` with each class folder named as one of `classes`, read as training reads a
 * validation folder (readClassFolders: subfolders followed, hidden files such as macOS's `._`
 * copies left out), so a model scores here on the images a job would have scored it on. What it
 * passes over goes to `warn`.
 */
export async function scanLabelledFolder(folder: string, classes: string[], warn: (w: DataWarning) => void = () => {}): Promise<LabelledImage[]> {
  const byClass = await readClassFolders(folder, warn).catch((err: NodeJS.ErrnoException) => {
    throw new EvalCommandError('DATA_INVALID', err instanceof DatasetError ? err.message : `cannot read data folder ${folder} (${err.code ?? err.message})`);
  });
  // Folder names come composed (NFC); an older model's classes may be as a Mac named them (NFD).
  const known = classes.map(nfc);
  const unknown = [...byClass.keys()].filter((d) => !known.includes(d));
  if (unknown.length) {
    throw new EvalCommandError(
      'DATA_INVALID',
      `folder ${folder} has class folders the model does not know: ${unknown.slice(0, 5).join(', ')} (the model's classes: ${classes.join(', ')})`,
    );
  }
  const out: LabelledImage[] = [];
  for (const [name, files] of byClass) for (const file of files) out.push({ file, label: known.indexOf(name) });
  if (out.length === 0) throw new EvalCommandError('DATA_INVALID', `folder ${folder} has no images in <class>/ folders (.jpg, .png, .webp, .gif, .tif, .avif)`);
  return out;
}

/** Runs the model over the images in batches; `progress(done, total)` after each batch. */
export async function evaluateFolder(
  model: EvalModel,
  images: LabelledImage[],
  opts: { batch?: number; progress?: (done: number, total: number) => void } = {},
): Promise<EvalReport> {
  const m = model.contract;
  const size = m.input.size;
  const batch = Math.max(1, opts.batch ?? 16);
  const acc = new EvaluationAccumulator(m.classes.length);
  const skipped: string[] = [];
  // As /v1/predict runs it on this CPU (model-registry.ts): int8-stored 8-bit weights saturate without VNNI.
  const file = await fs.readFile(model.onnxPath);
  const runner = await OnnxRunner.create(needsUint8Storage(m.quantization) ? toUint8WeightStorage(file) : file);
  try {
    for (let lo = 0; lo < images.length; lo += batch) {
      const chunk = images.slice(lo, lo + batch);
      const x = new Float32Array(chunk.length * 3 * size * size);
      const labels: number[] = [];
      for (const img of chunk) {
        try {
          // Exactly /v1/predict's path: header checks, EXIF rotation, alpha flattening, resize, crop.
          const rgb = await decodeForModel(await fs.readFile(img.file), { size });
          rgbToNchw(rgb, size, m.preprocess.normalization, x, labels.length * 3 * size * size);
          labels.push(img.label);
        } catch {
          skipped.push(img.file);
        }
      }
      if (labels.length) acc.add(await runner.run(x.subarray(0, labels.length * 3 * size * size), labels.length, size), labels);
      opts.progress?.(Math.min(lo + batch, images.length), images.length);
    }
  } finally {
    await runner.release();
  }
  return { model: model.name, classes: [...m.classes], ...acc.result(), skipped };
}

const pct = (v: number | null) => (v === null ? '-' : `${(v * 100).toFixed(2)}%`);

/**
 * The human-readable report: totals, per-class top-1, and the confusion matrix (rows: true class)
 * or, above MAX_MATRIX_CLASSES classes, where a row would not fit a screen, the most frequent mistakes.
 */
export function formatReport(r: EvalReport): string {
  const lines = [
    `model ${r.model}: ${r.images} images${r.skipped.length ? ` (${r.skipped.length} unreadable, skipped)` : ''}`,
    `top-1 ${pct(r.top1)}  top-5 ${pct(r.top5)}`,
    '',
    'per class (top-1, images):',
  ];
  const w = Math.max(5, ...r.classes.map((c) => c.length));
  r.classes.forEach((c, i) => lines.push(`  ${c.padEnd(w)}  ${pct(r.perClassTop1[i]).padStart(7)}  ${r.perClassImages[i]}`));
  const matrix = r.confusion;
  if (matrix) {
    lines.push('', 'confusion (rows: true class, columns: predicted, in class order):');
    const cw = Math.max(3, ...matrix.flat().map((v) => String(v).length));
    r.classes.forEach((c, i) => lines.push(`  ${c.padEnd(w)}  ${matrix[i].map((v) => String(v).padStart(cw)).join(' ')}`));
  } else {
    lines.push('', `most frequent mistakes (true class -> predicted: images; the matrix is left out above ${MAX_MATRIX_CLASSES} classes):`);
    for (const m of r.topConfusions) lines.push(`  ${r.classes[m.actual]} -> ${r.classes[m.predicted]}: ${m.count}`);
  }
  return lines.join('\n');
}

function progressBar(done: number, total: number): string {
  const width = 30;
  const filled = Math.round((done / total) * width);
  return `\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total} images`;
}

/** Runs `qatserve eval`; returns the exit code (2: usage or input errors, with a message on stderr). */
export async function runEvalCommand(
  args: string[],
  settings: Settings,
  io: { out?: (text: string) => void; err?: NodeJS.WriteStream | { isTTY?: boolean; write(s: string): unknown } } = {},
): Promise<number> {
  const out = io.out ?? ((t: string) => process.stdout.write(`${t}\n`));
  const err = io.err ?? process.stderr;
  try {
    const { values } = parseArgs({
      args,
      options: { model: { type: 'string' }, data: { type: 'string' }, json: { type: 'boolean', default: false }, batch: { type: 'string' } },
    });
    if (!values.model || !values.data) throw new EvalCommandError('EVAL_USAGE', `eval needs --model and --data\n${EVAL_USAGE}`);
    const batch = values.batch === undefined ? 16 : Number(values.batch);
    if (!Number.isInteger(batch) || batch < 1 || batch > 1024)
      throw new EvalCommandError('EVAL_USAGE', `--batch must be an integer in [1, 1024], got ${values.batch}`);
    const model = await resolveEvalModel(values.model, settings);
    const images = await scanLabelledFolder(values.data, model.contract.classes, (w) => err.write(`${w.code}: ${w.message}\n`));
    const tty = Boolean(err.isTTY) && !values.json;
    const report = await evaluateFolder(model, images, { batch, progress: tty ? (d, t) => err.write(progressBar(d, t)) : undefined });
    if (tty) err.write('\n');
    for (const f of report.skipped) err.write(`skipped unreadable image ${f}\n`);
    out(values.json ? JSON.stringify(report) : formatReport(report));
    return 0;
  } catch (e) {
    const code = (e as { code?: string }).code ?? '';
    if (code.startsWith('ERR_PARSE_ARGS')) {
      err.write(`${(e as Error).message}\n${EVAL_USAGE}\n`);
      return 2;
    }
    // Usage, an unknown model, a model whose files are missing, a bad folder: a message, not a trace.
    if (e instanceof EvalCommandError || e instanceof ModelUnavailableError) {
      err.write(`${(e as Error).message}\n`);
      return 2;
    }
    throw e;
  }
}
