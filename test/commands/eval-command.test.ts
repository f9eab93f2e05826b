// `qatserve eval --model path/to/model.onnx`: the manifest beside the file is checked as the server
// checks a stored one, so a hand-edited or foreign manifest is a clear error, not a wrong report.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveEvalModel } from '../../src/commands/eval-command.js';
import { writeFixtureModel, type FixtureModel } from '../serving/fixtures.js';

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
    expect(m).toMatchObject({ onnxPath: model.onnxFile, manifest: { classes: model.graph.classes, input: { size: 32 } } });
  });

  it('refuses a manifest that is not a qatserve manifest with MODEL_MANIFEST_INVALID and the field at fault', async () => {
    const model = await exported('edited');
    const manifest = JSON.parse(await readFile(model.manifestFile, 'utf8'));
    await writeFile(model.manifestFile, JSON.stringify({ ...manifest, preprocess: { ...manifest.preprocess, normalization: { mean: [0.5], std: [0.5] } } }));
    const err = await resolveEvalModel(model.onnxFile, settings).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'MODEL_MANIFEST_INVALID', message: expect.stringMatching(/preprocess\.normalization\.mean/) });
  });

  it('says MODEL_NOT_FOUND when there is no manifest beside the file', async () => {
    const model = await exported('bare');
    await rm(model.manifestFile);
    await expect(resolveEvalModel(model.onnxFile, settings)).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' });
  });
});
