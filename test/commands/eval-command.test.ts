// `qatserve eval --model path/to/model.onnx`: the manifest beside the file is checked as the server
// checks a stored one, so a hand-edited or foreign manifest is a clear error, not a wrong report.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateFolder, formatReport, resolveEvalModel, scanLabelledFolder } from '../../src/commands/eval-command.js';
import type { DataWarning } from '../../src/data/errors.js';
import { EvaluationAccumulator } from '../../src/export/export-job-evaluate.js';
import { quantGraphToQdqOnnx } from '../../src/export/onnx-qdq.js';
import { PG_TIMEOUTS } from '../../src/db/pg-pool.js';
import { runCli } from '../api/api-process.js';
import { makeImage, writeFixtureModel, type FixtureModel } from '../serving/fixtures.js';

// The file branch never opens the database or the artifact store.
const settings = {} as Parameters<typeof resolveEvalModel>[1];
let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'qatserve-eval-'));
});
// Each test has its own export directory: none depends on what another did to its files.
const exported = (id: string): Promise<FixtureModel> => writeFixtureModel(root, id, { classes: 3 });
afterAll(() => rm(root, { recursive: true, force: true }));

describe('qatserve eval --model <file>', () => {
  it('reads the manifest beside the file', async () => {
    const model = await exported('ok');
    const m = await resolveEvalModel(model.onnxFile, settings);
    expect(m).toMatchObject({ onnxPath: model.onnxFile, contract: { classes: model.graph.classes, input: { size: 32 }, sha256: expect.any(String) } });
  });

  it('refuses a manifest that is not a qatserve manifest with MODEL_MANIFEST_INVALID and the field at fault', async () => {
    const model = await exported('edited');
    const manifest = JSON.parse(await readFile(model.manifestFile, 'utf8'));
    await writeFile(model.manifestFile, JSON.stringify({ ...manifest, preprocess: { ...manifest.preprocess, normalization: { mean: [0.5], std: [0.5] } } }));
    const err = await resolveEvalModel(model.onnxFile, settings).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'MODEL_MANIFEST_INVALID', message: expect.stringMatching(/preprocess\.normalization\.mean/) });
  });

  it('runs a file downloaded alone from what its own metadata says: the same report as with its manifest', async () => {
    const model = await exported('downloaded');
    const images = path.join(root, 'downloaded-images');
    for (const [i, label] of model.graph.classes.entries()) {
      await mkdir(path.join(images, label), { recursive: true });
      for (let k = 0; k < 2; k++) await writeFile(path.join(images, label, `${k}.png`), await makeImage('png', 40 + 8 * i, 36 + 4 * k));
    }
    const report = async () => {
      const m = await resolveEvalModel(model.onnxFile, settings);
      return { m, report: await evaluateFolder(m, await scanLabelledFolder(images, m.contract.classes)) };
    };
    const withManifest = await report();
    await rm(model.manifestFile);
    const alone = await report();
    expect(alone.m.contract).toEqual({
      classes: withManifest.m.contract.classes,
      input: withManifest.m.contract.input,
      output: withManifest.m.contract.output,
      preprocess: withManifest.m.contract.preprocess,
      quantization: { weightEncoding: 'uint8', weightBits: 8 },
    });
    expect(alone.report.images).toBe(6);
    expect(alone.report).toEqual(withManifest.report);
  });

  it('says MODEL_NOT_FOUND, and what to put beside it, for a file with neither a manifest nor the metadata (an older export)', async () => {
    const model = await exported('bare');
    await rm(model.manifestFile);
    await writeFile(model.onnxFile, quantGraphToQdqOnnx(model.graph, { weightEncoding: 'uint8', metadata: { jobId: 'job-bare' } }));
    await expect(resolveEvalModel(model.onnxFile, settings)).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
      message: expect.stringMatching(/no readable manifest\.json beside it, and its metadata has no "qatserve" entry .*GET \/v1\/models\/<id>/),
    });
  });
});

describe("qatserve eval --model <id> where the service's database is not", () => {
  /** The settings eval reads, for a SQLite database at `file` (an fs artifact store beside it). */
  const sqliteSettings = (file: string): Parameters<typeof resolveEvalModel>[1] => ({
    databaseUrl: `file:${file}`,
    databaseTimeouts: PG_TIMEOUTS,
    artifactStore: 'fs',
    artifactsDir: path.join(path.dirname(file), 'artifacts'),
    modelCacheDir: path.join(path.dirname(file), 'cache'),
    modelCacheMaxBytes: 2 ** 30,
  });

  it('says there is no database to look the id up in, and creates none', async () => {
    // Run in a directory other than the service's: it made an empty ./data/qatserve.db and printed
    // Prisma's "table `main.Model` does not exist" with a stack.
    const dataDir = path.join(root, 'elsewhere', 'data');
    const file = path.join(dataDir, 'qatserve.db');
    await expect(resolveEvalModel('m-123', sqliteSettings(file))).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
      message: `no file "m-123", and no database at ${file} to look a model id up in: run eval with the service's DATA_DIR (or DATABASE_URL), or give a model.onnx`,
    });
    expect(existsSync(dataDir)).toBe(false);
  });

  it("says a database without qatserve tables is not the service's", async () => {
    const file = path.join(root, 'other.db');
    new BetterSqlite3(file).close(); // a SQLite file, but not one qatserve migrated
    await expect(resolveEvalModel('m-123', sqliteSettings(file))).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
      message: `the database ${file} has no qatserve tables: DATABASE_URL (or DATA_DIR) is not the service's, or it was never migrated (qatserve migrate)`,
    });
  });

  it('says a directory given as the model is one, and what to give instead', async () => {
    const model = await exported('as-directory');
    const dir = path.dirname(model.onnxFile);
    await expect(resolveEvalModel(dir, sqliteSettings(path.join(root, 'unused.db')))).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
      message: `${dir} is a directory: give the model.onnx in it (with its manifest.json beside it)`,
    });
  });

  it('`qatserve eval` says so in one line and exits 2', async () => {
    const dataDir = path.join(root, 'cli-elsewhere');
    const images = path.join(root, 'cli-images', 'cat');
    await mkdir(images, { recursive: true });
    const r = await runCli(['eval', '--model', 'm-123', '--data', path.dirname(images)], { DATA_DIR: dataDir });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      `no file "m-123", and no database at ${path.join(dataDir, 'qatserve.db')} to look a model id up in: run eval with the service's DATA_DIR (or DATABASE_URL), or give a model.onnx`,
    );
    expect(existsSync(dataDir)).toBe(false);
  });
});

describe('qatserve eval report', () => {
  /** Every image of class c answered as class (c + 1) % k: one mistake per class, 3 images each. */
  const report = (k: number) => {
    const acc = new EvaluationAccumulator(k);
    for (let c = 0; c < k; c++) {
      const logits = new Float32Array(3 * k);
      for (let r = 0; r < 3; r++) logits[r * k + ((c + 1) % k)] = 1;
      acc.add(logits, new Int32Array(3).fill(c));
    }
    return formatReport({ ...acc.result(), model: 'm', classes: Array.from({ length: k }, (_, i) => `c${i}`), skipped: [] });
  };

  it('prints the confusion matrix up to 100 classes, and the most frequent mistakes above', () => {
    const small = report(4);
    expect(small).toContain('confusion (rows: true class, columns: predicted, in class order):\n  c0       0   3   0   0\n');
    expect(small).toContain('\n  c3       0.00%  3\n');
    // 1,000 classes: a matrix row would be 4,000 characters wide, and Math.max over its million cells threw.
    const big = report(1000);
    expect(big).not.toMatch(/confusion \(rows/);
    expect(big).toMatch(
      /most frequent mistakes \(true class -> predicted: images; the matrix is left out above 100 classes\):\n {2}c0 -> c1: 3\n {2}c1 -> c2: 3\n/,
    );
    expect(big.split('\n').length).toBeLessThan(1000 + 100 + 20);
    expect(Math.max(...big.split('\n').map((l) => l.length))).toBeLessThan(120);
  });
});

describe('qatserve eval --data <folder>', () => {
  it('reads the folder as training reads a validation folder: subfolders followed, macOS copies and other formats left out', async () => {
    // Bytes are enough: the scan reads no image (evaluateFolder decodes them).
    const data = path.join(root, 'test-split');
    for (const rel of ['cat/1.jpg', 'cat/2019/2.jpg', 'dog/3.png', 'dog/._3.png', 'dog/IMG_4.HEIC']) {
      await mkdir(path.dirname(path.join(data, rel)), { recursive: true });
      await writeFile(path.join(data, rel), 'x');
    }
    const warnings: DataWarning[] = [];
    const images = await scanLabelledFolder(data, ['bird', 'cat', 'dog'], (w) => warnings.push(w));
    // Until the thirty-ninth session: cat/2019/2.jpg missed and dog/._3.png scored as a broken image.
    expect(images).toEqual([
      { file: path.join(data, 'cat/1.jpg'), label: 1 },
      { file: path.join(data, 'cat/2019/2.jpg'), label: 1 },
      { file: path.join(data, 'dog/3.png'), label: 2 },
    ]);
    expect(warnings.map((w) => w.code)).toEqual(['FORMAT_UNREAD']);

    await expect(scanLabelledFolder(data, ['cat'])).rejects.toThrow(`folder ${data} has class folders the model does not know: dog (the model's classes: cat)`);
    await expect(scanLabelledFolder(path.join(root, 'nowhere'), ['cat'])).rejects.toMatchObject({
      code: 'DATA_INVALID',
      message: `cannot read data folder ${path.join(root, 'nowhere')} (ENOENT)`,
    });
  });
});
