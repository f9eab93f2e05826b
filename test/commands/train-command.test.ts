import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { progressLine, runTrainCommand, TrainCommandError } from '../../src/commands/train-command.js';
import { runCli } from '../api/api-process.js';
import { phaseLine } from '../../src/ml/train-api.js';
import { loadSettings } from '../../src/config/settings.js';

process.env.TFJS_BACKEND ||= 'cpu';
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'qatserve-cmd-'));
// The settings of an environment that sets nothing, as the CLI passes them.
const settings = loadSettings({});
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

describe('qatserve train', () => {
  it('formats one progress line with bar, loss, lr, speed and ETA', () => {
    const info = { backend: 'cpu' as const, totalSteps: 100, stepsPerEpoch: 50, startStep: 0, numTrain: 800, numVal: 80, classes: ['a'], dataset: 'synthetic' };
    const line = progressLine({ step: 25, epoch: 1, loss: 0.123456, learningRate: 0.05, imagesPerSecond: 12.34 }, info, 2, 5, 8);
    expect(line).toBe('[=>      ] step 25/100 epoch 1/2 loss 0.1235 lr 0.0500 12.3 img/s ETA 15s');
  });

  it("formats an evaluation's line: its task, and the images scored so far on a terminal", () => {
    const p = { name: 'evaluating' as const, task: 'int8 top-1 on the validation split', done: 1200, total: 2000 };
    expect(phaseLine(p, true)).toBe('evaluating: int8 top-1 on the validation split 1200/2000 images');
    expect(phaseLine({ ...p, done: 0 }, false)).toBe('evaluating: int8 top-1 on the validation split (2000 images)');
  });

  it('rejects an invalid config with the offending field path', async () => {
    const file = path.join(tmp, 'bad.json');
    await fs.writeFile(file, JSON.stringify({ dataset: { type: 'synthetic' }, training: { batchSize: 0 } }));
    const err = await runTrainCommand({ configPath: file, workDir: path.join(tmp, 'bad') }, settings).catch((e) => e);
    expect(err).toBeInstanceOf(TrainCommandError);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain('training.batchSize');
  });

  it('`qatserve train` with a config it cannot use exits 1 with the reason alone, no stack', async () => {
    const file = path.join(tmp, 'cli-bad.json');
    await fs.writeFile(file, JSON.stringify({ dataset: { type: 'synthetic' }, training: { learningRate: -1 } }));
    for (const [config, reason] of [
      [file, `${file}:\n  training.learningRate: Too small: expected number to be >0`],
      [path.join(tmp, 'missing.json'), `cannot read ${path.join(tmp, 'missing.json')}: ENOENT`],
    ]) {
      const r = await runCli(['train', config], { DATA_DIR: path.join(tmp, 'cli') });
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(new RegExp(`^${reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
  });

  it('`qatserve train` says in one line what the run refused: a folder, a checkpoint, a work directory', async () => {
    const config = path.join(tmp, 'cli-folder.json');
    await fs.writeFile(config, JSON.stringify({ dataset: { type: 'imagefolder', path: 'pets' } }));
    const tiny = path.join(tmp, 'cli-tiny.json');
    await fs.writeFile(tiny, JSON.stringify({ dataset: { type: 'synthetic', classes: 2, samplesPerClass: 2, valPerClass: 1 }, model: { inputSize: 32 } }));
    const root = path.join(tmp, 'cli-root');
    await fs.mkdir(root);
    const notADir = path.join(tmp, 'cli-file');
    await fs.writeFile(notADir, '');
    // Each run's work directory, under a parent made for it: a run refused before it wrote anything
    // leaves neither behind (it left an empty runs/<name>-<time> in the working directory).
    const runDir = (n: number) => path.join(tmp, `cli-runs-${n}`, 'run');
    for (const [args, said] of [
      [
        [config, '--data-root', root, '--work-dir', runDir(1)],
        `dataset folder "pets" does not exist under the data root (DATA_ROOT); here the data root is ${root} (--data-root, else DATA_ROOT, else the working directory)`,
      ],
      [[tiny, '--resume', path.join(tmp, 'no-such-run'), '--work-dir', runDir(2)], `no checkpoint under ${path.join(tmp, 'no-such-run')}`],
      [
        [tiny, '--work-dir', path.join(notADir, 'run')],
        `cannot create the work directory ${path.join(notADir, 'run')} (ENOTDIR): give --work-dir one you can write`,
      ],
    ] as const) {
      const r = await runCli(['train', ...args], { DATA_DIR: path.join(tmp, 'cli') });
      expect(r.code, r.stderr).toBe(1);
      // The backend lines come first; the reason is the last line, alone.
      expect(r.stderr.trim().split('\n').at(-1)).toBe(said);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    expect(existsSync(path.dirname(runDir(1))), 'work directory left behind').toBe(false);
    expect(existsSync(path.dirname(runDir(2))), 'work directory left behind').toBe(false);
  });

  it('trains from a YAML config and prints the final evaluation', async () => {
    const file = path.join(tmp, 'cfg.yaml');
    await fs.writeFile(
      file,
      [
        'name: tiny',
        'dataset: { type: synthetic, classes: 3, samplesPerClass: 2, valPerClass: 1 }',
        'model: { widthMultiplier: 0.1, inputSize: 32, smallInputStem: "off" }',
        'training: { batchSize: 2, epochs: 1 }',
      ].join('\n'),
    );
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
      out.push(String(s));
      return true;
    });
    try {
      await runTrainCommand({ configPath: file, workDir: path.join(tmp, 'run') }, settings);
    } finally {
      spy.mockRestore();
    }
    const text = out.join('');
    expect(text).toMatch(new RegExp(`done: 3 steps on ${process.env.TFJS_BACKEND}; checkpoint .*step-000003`));
    expect(text).toMatch(/eval step 3 \(epoch 1\): top-1 \d+\.\d\d% top-5 100\.00%/);
    expect(await fs.readdir(path.join(tmp, 'run', 'checkpoints'))).toEqual(['step-000003']);
  }, 120_000);

  it('reads image folders under DATA_ROOT when it is set, else under the working directory', async () => {
    const file = path.join(tmp, 'folder.json');
    await fs.writeFile(file, JSON.stringify({ dataset: { type: 'imagefolder', path: 'no-such-folder' }, training: { epochs: 1 } }));
    const run = (s: typeof settings) => runTrainCommand({ configPath: file, workDir: path.join(tmp, 'folder') }, s).catch((e: Error) => e);
    const root = path.join(tmp, 'no-such-root');
    expect(await run(loadSettings({ DATA_ROOT: root }))).toMatchObject({
      code: 'TRAINING_FAILED',
      cause: { code: 'DATASET_NOT_FOUND' },
      message: expect.stringContaining(root),
    });
    // DATA_ROOT unset: the working directory (which exists), not the service's <DATA_DIR>/datasets.
    expect(await run(loadSettings({ DATA_DIR: root }))).toMatchObject({
      code: 'TRAINING_FAILED',
      cause: { code: 'DATASET_NOT_FOUND' },
      message: expect.stringContaining(`"no-such-folder" does not exist under the data root (DATA_ROOT); here the data root is ${process.cwd()} `),
    });
  });
});
