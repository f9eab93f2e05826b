import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, realpath, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImageToRgb, loadDataset, NORMALIZATION, resolveUnderRoot, type DataWarning } from '../../src/data/index.js';
import { holdOut, splitLayout } from '../../src/data/image-folder.js';

let tmp: string; // holds dataRoot and a sibling "outside" folder
let dataRoot: string;
const noAug = { augment: false, seed: 0, epoch: 0, step: 0 };
const toByte = (v: number, c: number) => Math.round((v * NORMALIZATION.std[c] + NORMALIZATION.mean[c]) * 255) || 0;

type Rgb = [number, number, number];
const solid = (w: number, h: number, rgb: Rgb) => sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });

/** A JPEG of random pixels cut at 80%: its header is intact (metadata works), its data is not. */
async function truncatedJpeg(): Promise<Buffer> {
  const noise = Buffer.alloc(64 * 64 * 3);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
  const jpg = await sharp(noise, { raw: { width: 64, height: 64, channels: 3 } })
    .jpeg()
    .toBuffer();
  const cut = jpg.subarray(0, Math.floor(jpg.length * 0.8));
  expect((await sharp(cut).metadata()).width).toBe(64);
  return cut;
}

async function writeImage(file: string, img: sharp.Sharp, format: 'jpeg' | 'png' | 'webp') {
  await mkdir(path.dirname(file), { recursive: true });
  const buf =
    format === 'jpeg'
      ? await img.jpeg({ quality: 95 }).toBuffer()
      : format === 'png'
        ? await img.png().toBuffer()
        : await img.webp({ lossless: true }).toBuffer();
  await writeFile(file, buf);
}

/** Mean decoded RGB of sample i of a split (un-normalized bytes). */
async function meanRgb(split: { batch: (i: number[], a: typeof noAug) => Promise<{ x: Float32Array }> }, i: number, size: number): Promise<Rgb> {
  const { x } = await split.batch([i], noAug);
  const m: Rgb = [0, 0, 0];
  for (let p = 0; p < size * size; p++) for (let c = 0; c < 3; c++) m[c] += toByte(x[p * 3 + c], c) / (size * size);
  return m.map(Math.round) as Rgb;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'qatserve-data-'));
  dataRoot = path.join(tmp, 'root');
  // flat/<class>/*: red (JPEG), green (PNG), blue (WebP); 10 each; plus junk that must be ignored or skipped
  for (let k = 0; k < 10; k++) {
    const name = `img${String(k).padStart(2, '0')}`;
    await writeImage(path.join(dataRoot, 'flat/red', `${name}.jpg`), solid(40, 30, [220, 20, 20]), 'jpeg');
    await writeImage(path.join(dataRoot, 'flat/green', `${name}.png`), solid(30, 40, [20, 200, 20]), 'png');
    await writeImage(path.join(dataRoot, 'flat/blue', `${name}.webp`), solid(50, 50, [20, 20, 210]), 'webp');
  }
  await writeFile(path.join(dataRoot, 'flat/red/notes.txt'), 'not an image');
  // Photos in formats it does not read: named in a warning (notes and dotfiles are not).
  await writeFile(path.join(dataRoot, 'flat/red/IMG_0001.HEIC'), 'a phone photo');
  await writeFile(path.join(dataRoot, 'flat/red/IMG_0002.heic'), 'a phone photo');
  await writeFile(path.join(dataRoot, 'flat/blue/scan.bmp'), 'a scan');
  // A folder of phone photos only: refused, saying what it skipped.
  for (const c of ['cats', 'dogs']) {
    await mkdir(path.join(dataRoot, 'phone', c), { recursive: true });
    for (let k = 0; k < 3; k++) await writeFile(path.join(dataRoot, 'phone', c, `IMG_${k}.HEIC`), 'x');
  }
  // The other formats /v1/predict decodes: GIF, TIFF, AVIF.
  for (let k = 0; k < 3; k++) {
    const write = async (file: string, img: sharp.Sharp) => {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, await img.toBuffer());
    };
    await write(path.join(dataRoot, 'formats/gifs', `frame${k}.gif`), solid(40, 30, [230, 200, 10]).gif());
    await write(path.join(dataRoot, 'formats/tiffs', `scan${k}.TIF`), solid(30, 40, [10, 200, 230]).tiff());
    await write(path.join(dataRoot, 'formats/avifs', `photo${k}.avif`), solid(48, 48, [200, 10, 200]).avif({ lossless: true }));
  }
  // A HEIC photo under an AVIF name (some converters do that): its header reads, its pixels cannot.
  await writeFile(path.join(dataRoot, 'formats/avifs/IMG_0001.avif'), await readFile(new URL('../serving/fixtures/iphone-photo.heic', import.meta.url)));
  await writeFile(path.join(dataRoot, 'flat/red/.DS_Store'), 'junk');
  await writeFile(path.join(dataRoot, 'flat/green/corrupt.png'), Buffer.from('this is not a PNG at all, just text'));
  await mkdir(path.join(dataRoot, 'flat/empty-class'), { recursive: true });

  // split/train|val/<class>/*
  for (const [part, n] of [
    ['train', 4],
    ['val', 2],
  ] as const) {
    for (let k = 0; k < n; k++) {
      await writeImage(path.join(dataRoot, 'split', part, 'cat', `${k}.png`), solid(20, 20, [200, 100, 0]), 'png');
      await writeImage(path.join(dataRoot, 'split', part, 'dog', `${k}.jpeg`), solid(20, 20, [0, 100, 200]), 'jpeg');
    }
  }

  // outside the root, and links to it
  await writeImage(path.join(tmp, 'outside/a/x.png'), solid(8, 8, [1, 2, 3]), 'png');
  await writeImage(path.join(tmp, 'outside/b/y.png'), solid(8, 8, [1, 2, 3]), 'png');
  await symlink(path.join(tmp, 'outside'), path.join(dataRoot, 'link-out'));
  await symlink(path.join(dataRoot, 'split'), path.join(dataRoot, 'link-in'));
  await writeFile(path.join(dataRoot, 'a-file'), 'x');
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('resolveUnderRoot', () => {
  const code = (p: Promise<unknown>) =>
    p.then(
      () => 'resolved',
      (e: { code?: string }) => e.code,
    );

  it('resolves folders inside the root (including through inside symlinks and harmless ..)', async () => {
    const real = await resolveUnderRoot(dataRoot, 'flat');
    expect(real.endsWith(path.join('root', 'flat'))).toBe(true);
    expect(await resolveUnderRoot(dataRoot, 'flat/../split')).toBe(await resolveUnderRoot(dataRoot, 'split'));
    expect(await resolveUnderRoot(dataRoot, 'link-in')).toBe(await resolveUnderRoot(dataRoot, 'split'));
  });

  it('rejects escapes with DATASET_PATH_INVALID and a clear message', async () => {
    expect(await code(resolveUnderRoot(dataRoot, '../outside'))).toBe('DATASET_PATH_INVALID');
    expect(await code(resolveUnderRoot(dataRoot, 'flat/../../outside'))).toBe('DATASET_PATH_INVALID');
    expect(await code(resolveUnderRoot(dataRoot, path.join(tmp, 'outside')))).toBe('DATASET_PATH_INVALID');
    expect(await code(resolveUnderRoot(dataRoot, 'link-out'))).toBe('DATASET_PATH_INVALID');
    expect(await code(resolveUnderRoot(dataRoot, 'link-out/a'))).toBe('DATASET_PATH_INVALID');
    expect(await code(resolveUnderRoot(dataRoot, 'a-file'))).toBe('DATASET_PATH_INVALID');
    expect(await code(resolveUnderRoot(dataRoot, ''))).toBe('DATASET_PATH_INVALID');
    await expect(resolveUnderRoot(dataRoot, 'link-out')).rejects.toThrow(/outside the data root/);
    await expect(resolveUnderRoot(dataRoot, '/etc')).rejects.toThrow(/relative/);
  });

  it('reports a missing folder as DATASET_NOT_FOUND', async () => {
    expect(await code(resolveUnderRoot(dataRoot, 'nope'))).toBe('DATASET_NOT_FOUND');
    expect(await code(resolveUnderRoot(dataRoot, 'a-file/sub'))).toBe('DATASET_NOT_FOUND');
    await expect(resolveUnderRoot(dataRoot, 'nope')).rejects.toMatchObject({ name: 'DatasetPathError' });
  });

  it('finds a folder named on a Mac (decomposed Unicode) by the name typed, and suggests the name a case slip missed', async () => {
    // "cafés/été" as macOS writes it: each é as e + U+0301. Clients send U+00E9.
    const decomposed = path.join(dataRoot, 'cafe\u0301s', 'e\u0301te\u0301');
    await mkdir(decomposed, { recursive: true });
    expect(await resolveUnderRoot(dataRoot, 'caf\u00e9s/\u00e9t\u00e9')).toBe(await realpath(decomposed));
    expect(await resolveUnderRoot(dataRoot, 'caf\u00e9s/../flat')).toBe(await resolveUnderRoot(dataRoot, 'flat'));
    await expect(resolveUnderRoot(dataRoot, 'Flat')).rejects.toThrow(
      'dataset folder "Flat" does not exist under the data root (DATA_ROOT); did you mean "flat"?',
    );
    await expect(resolveUnderRoot(dataRoot, 'caf\u00e9s/\u00c9t\u00e9')).rejects.toMatchObject({
      code: 'DATASET_NOT_FOUND',
      message: expect.stringContaining('did you mean "e\u0301te\u0301"?'),
    });
  });
});

describe('decodeImageToRgb', () => {
  it('decodes grey, alpha and 16-bit PNGs and CMYK JPEGs to 8-bit sRGB', async () => {
    const grey = await sharp({ create: { width: 6, height: 6, channels: 3, background: { r: 90, g: 90, b: 90 } } })
      .toColourspace('b-w')
      .png()
      .toBuffer();
    expect((await sharp(grey).metadata()).channels).toBe(1);
    expect(Array.from((await decodeImageToRgb(grey, 4)).slice(0, 3))).toEqual([90, 90, 90]);

    // fully transparent red on the left, opaque red on the right: transparent flattens to white
    const rgba = Buffer.alloc(4 * 4 * 4);
    for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) rgba.set([255, 0, 0, x < 2 ? 0 : 255], (y * 4 + x) * 4);
    const alphaPng = await sharp(rgba, { raw: { width: 4, height: 4, channels: 4 } })
      .png()
      .toBuffer();
    const a = await decodeImageToRgb(alphaPng, 4);
    expect(Array.from(a.slice(0, 3))).toEqual([255, 255, 255]);
    expect(Array.from(a.slice(3 * 3, 3 * 3 + 3))).toEqual([255, 0, 0]);

    const png16 = await sharp({ create: { width: 5, height: 5, channels: 3, background: { r: 128, g: 64, b: 32 } } })
      .png()
      .toColourspace('rgb16')
      .toBuffer();
    expect((await sharp(png16).metadata()).depth).toBe('ushort');
    const d16 = await decodeImageToRgb(png16, 3);
    expect(d16.length).toBe(27);
    for (const [i, want] of [128, 64, 32].entries()) expect(Math.abs(d16[i] - want)).toBeLessThanOrEqual(1);

    const cmyk = await solid(8, 8, [200, 40, 40]).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const c = await decodeImageToRgb(cmyk, 4);
    expect(c.length).toBe(48);
    expect(c[0]).toBeGreaterThan(150); // still red after CMYK -> sRGB
    expect(c[1]).toBeLessThan(90);
  });

  it('centre-crops to a square', async () => {
    // 30x10: blue | red | blue in thirds; the centred 10x10 crop is all red
    const raw = Buffer.alloc(30 * 10 * 3);
    for (let y = 0; y < 10; y++) for (let x = 0; x < 30; x++) raw.set(x >= 10 && x < 20 ? [255, 0, 0] : [0, 0, 255], (y * 30 + x) * 3);
    const png = await sharp(raw, { raw: { width: 30, height: 10, channels: 3 } })
      .png()
      .toBuffer();
    const out = await decodeImageToRgb(png, 10);
    for (let p = 0; p < 100; p++) expect(Array.from(out.slice(p * 3, p * 3 + 3))).toEqual([255, 0, 0]);
  });

  it('throws on garbage and on a truncated JPEG', async () => {
    await expect(decodeImageToRgb(Buffer.from('garbage'), 8)).rejects.toThrow();
    await expect(decodeImageToRgb(await truncatedJpeg(), 8)).rejects.toThrow(/premature end/);
  });
});

describe('imagefolder dataset', () => {
  it('reads GIF, TIFF and AVIF photos, as /v1/predict does', async () => {
    const warnings: DataWarning[] = [];
    const ds = await loadDataset({ type: 'imagefolder', path: 'formats', valSplit: 0.34 }, { dataRoot, inputSize: 16, onWarning: (w) => warnings.push(w) });
    expect(ds.classes).toEqual(['avifs', 'gifs', 'tiffs']);
    expect([ds.train.length + ds.val.length, ds.stats.skipped]).toEqual([9, 1]);
    expect(warnings).toEqual([
      {
        code: 'IMAGE_UNREADABLE',
        message: `skipped ${path.join(dataRoot, 'formats/avifs/IMG_0001.avif')}: the image is HEIC (HEVC-coded, as iPhones save photos), which this server cannot decode; convert it to JPEG (on an iPhone: Settings > Camera > Formats > Most Compatible)`,
      },
    ]);
    const colours = [
      [200, 10, 200],
      [230, 200, 10],
      [10, 200, 230],
    ];
    for (let i = 0; i < ds.train.length; i++) {
      const got = await meanRgb(ds.train, i, 16);
      const want = colours[ds.train.labels[i]];
      for (let c = 0; c < 3; c++) expect(Math.abs(got[c] - want[c]), `${ds.classes[ds.train.labels[i]]} ${got}`).toBeLessThanOrEqual(3);
    }
  });

  it('reads <class>/* with a deterministic per-class hold-out, skipping junk with warnings', async () => {
    const warnings: DataWarning[] = [];
    const cfg = { type: 'imagefolder' as const, path: 'flat', valSplit: 0.2 };
    const ds = await loadDataset(cfg, { dataRoot, inputSize: 16, onWarning: (w) => warnings.push(w) });
    expect(ds.classes).toEqual(['blue', 'green', 'red']); // empty-class dropped
    expect(ds.train.length).toBe(24);
    expect(ds.val.length).toBe(6);
    expect(ds.stats.skipped).toBe(1);
    expect(warnings.map((w) => w.code).sort()).toEqual(['CLASS_EMPTY', 'FORMAT_UNREAD', 'IMAGE_UNREADABLE']);
    expect(warnings.find((w) => w.code === 'IMAGE_UNREADABLE')!.message).toContain('corrupt.png');
    expect(warnings.find((w) => w.code === 'FORMAT_UNREAD')!.message).toBe(
      'skipped 3 image files in other formats (.heic 2, .bmp 1): only JPEG, PNG, WebP, GIF, TIFF and AVIF are read; convert them to train on them',
    );

    // colours arrive decoded (JPEG is lossy: within a few levels)
    const red = ds.train.labels.indexOf(2);
    const [r, g, b] = await meanRgb(ds.train, red, 16);
    expect(r).toBeGreaterThan(200);
    expect(g).toBeLessThan(40);
    expect(b).toBeLessThan(40);
    expect(await meanRgb(ds.val, ds.val.labels.indexOf(1), 16)).toEqual([20, 200, 20]); // PNG: exact
    expect(await meanRgb(ds.val, ds.val.labels.indexOf(0), 16)).toEqual([20, 20, 210]); // lossless WebP

    // the same hold-out on a second load
    const again = await loadDataset(cfg, { dataRoot, inputSize: 16 });
    expect(again.val.labels).toEqual(ds.val.labels);
    expect(again.description).toBe(ds.description);
    expect(again.fingerprint).toBe(ds.fingerprint);
    expect(ds.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    // a different split is a different sample list
    const other = await loadDataset({ ...cfg, valSplit: 0.3 }, { dataRoot, inputSize: 16 });
    expect(other.fingerprint).not.toBe(ds.fingerprint);
  });

  it('skips a line too long to scale to the model input, saying so (it read as corrupt at decode)', async () => {
    for (const c of ['a', 'b']) for (let k = 0; k < 3; k++) await writeImage(path.join(dataRoot, 'lines', c, `${k}.png`), solid(12, 12, [9, 9, 9]), 'png');
    await writeImage(path.join(dataRoot, 'lines/a/scan-strip.png'), solid(1, 150_000, [9, 9, 9]), 'png');
    const warnings: DataWarning[] = [];
    const ds = await loadDataset({ type: 'imagefolder', path: 'lines', valSplit: 0 }, { dataRoot, inputSize: 16, onWarning: (w) => warnings.push(w) });
    expect(ds.train.length + ds.val.length).toBe(6);
    expect(warnings).toEqual([
      {
        code: 'IMAGE_UNREADABLE',
        message: `skipped ${path.join(await realpath(dataRoot), 'lines/a/scan-strip.png')}: the image is 1x150000: its long side is 150000 times its short side, too many to scale it to the model's input`,
      },
    ]);
  });

  it('reports the headers it has read of every image file found, from 0 to all of them', async () => {
    // A folder of a million photos takes minutes to scan: the job says how far it is.
    const calls: [number, number][] = [];
    await loadDataset(
      { type: 'imagefolder', path: 'flat', valSplit: 0.2 },
      { dataRoot, inputSize: 16, onProgress: (done, total) => void calls.push([done, total]) },
    );
    // 30 readable images and one corrupt PNG; other formats and junk are not counted.
    expect(calls).toEqual(Array.from({ length: 32 }, (_, i) => [i, 31]));
  });

  it('holds out by a seeded shuffle of sorted names: disjoint, covering, stable under input order', () => {
    const files = Array.from({ length: 20 }, (_, i) => `f${i}.jpg`);
    const a = holdOut(files, 'cls', 0.25);
    const b = holdOut([...files].reverse(), 'cls', 0.25);
    expect(a).toEqual(b);
    expect(a.val.length).toBe(5);
    expect([...a.train, ...a.val].sort()).toEqual([...files].sort());
    expect(a.val).not.toEqual(['f0.jpg', 'f1.jpg', 'f10.jpg', 'f11.jpg', 'f12.jpg']); // not just the first names
    expect(holdOut(['only.jpg'], 'x', 0.5)).toEqual({ train: ['only.jpg'], val: [] });
    expect(holdOut(['a', 'b'], 'x', 0.01).val.length).toBe(1);
  });

  it('skips symlinked files and class folders that lead outside the root, follows those inside', async () => {
    const base = path.join(dataRoot, 'linked');
    for (const cls of ['x', 'y']) for (let k = 0; k < 2; k++) await writeImage(path.join(base, cls, `${k}.png`), solid(8, 8, [9, 9, 9]), 'png');
    await symlink(path.join(tmp, 'outside/a/x.png'), path.join(base, 'x', 'stolen.png'));
    await symlink(path.join(tmp, 'outside/b'), path.join(base, 'z'));
    await symlink(path.join(base, 'x', '0.png'), path.join(base, 'y', 'alias.png'));
    const warnings: DataWarning[] = [];
    const ds = await loadDataset({ type: 'imagefolder', path: 'linked', valSplit: 0.3 }, { dataRoot, inputSize: 8, onWarning: (w) => warnings.push(w) });
    expect(ds.classes).toEqual(['x', 'y']);
    expect(ds.train.length + ds.val.length).toBe(5); // 2 + 2 + the inside alias
    expect(warnings.map((w) => w.code)).toEqual(['SYMLINK_OUTSIDE_ROOT', 'SYMLINK_OUTSIDE_ROOT']);
    expect(warnings.some((w) => w.message.includes(path.join('linked', 'x', 'stolen.png')))).toBe(true);
    expect(warnings.some((w) => w.message.includes(`${path.join('linked', 'z')}:`))).toBe(true);
  });

  it('reads train/ and val/ folders as given', async () => {
    const ds = await loadDataset({ type: 'imagefolder', path: 'split', valSplit: 0.1 }, { dataRoot, inputSize: 8 });
    expect(ds.classes).toEqual(['cat', 'dog']);
    expect(ds.train.length).toBe(8);
    expect(ds.val.length).toBe(4);
    expect(Array.from(ds.val.labels)).toEqual([0, 0, 1, 1]);
  });

  it("keeps a resumed job's classes: a class folder added since is left out of train/ and val/, one gone is DATASET_CHANGED", async () => {
    for (const part of ['train', 'val']) {
      for (const c of ['ant', 'bee', 'cat']) await writeImage(path.join(dataRoot, 'grown', part, c, '0.png'), solid(8, 8, [9, 9, 9]), 'png');
    }
    const warnings: DataWarning[] = [];
    const cfg = { type: 'imagefolder' as const, path: 'grown', valSplit: 0.1 };
    const ds = await loadDataset(cfg, { dataRoot, inputSize: 8, classes: ['ant', 'cat'], onWarning: (w) => warnings.push(w) });
    expect(ds.classes).toEqual(['ant', 'cat']);
    expect([Array.from(ds.train.labels), Array.from(ds.val.labels)]).toEqual([
      [0, 1],
      [0, 1],
    ]);
    expect(warnings).toEqual([
      { code: 'CLASS_ADDED', message: 'class folder(s) "bee" appeared in "grown" after this job started: it goes on with the 2 classes it started with' },
    ]);
    const gone = loadDataset(cfg, { dataRoot, inputSize: 8, classes: ['ant', 'cat', 'eel'] });
    await expect(gone).rejects.toMatchObject({
      code: 'DATASET_CHANGED',
      message: expect.stringContaining('class(es) "eel", which this job trained on (3 classes)'),
    });
  });

  it('names classes in composed Unicode: a Mac-named (NFD) train/ folder is one class with its val/ folder named here, and its label is the typed text', async () => {
    const [composed, decomposed] = ['caf\u00e9', 'cafe\u0301'];
    for (let k = 0; k < 2; k++) {
      await writeImage(path.join(dataRoot, 'mixed', 'train', decomposed, `${k}.png`), solid(8, 8, [200, 0, 0]), 'png');
      await writeImage(path.join(dataRoot, 'mixed', 'train', 'tea', `${k}.png`), solid(8, 8, [0, 0, 200]), 'png');
    }
    await writeImage(path.join(dataRoot, 'mixed', 'val', composed, '0.png'), solid(8, 8, [200, 0, 0]), 'png');
    await writeImage(path.join(dataRoot, 'mixed', 'val', 'tea', '0.png'), solid(8, 8, [0, 0, 200]), 'png');
    const warnings: DataWarning[] = [];
    const cfg = { type: 'imagefolder' as const, path: 'mixed', valSplit: 0.1 };
    const ds = await loadDataset(cfg, { dataRoot, inputSize: 8, onWarning: (w) => warnings.push(w) });
    expect(ds.classes).toEqual([composed, 'tea']);
    expect([Array.from(ds.train.labels), Array.from(ds.val.labels)]).toEqual([
      [0, 0, 1, 1],
      [0, 1],
    ]);
    expect(warnings).toEqual([]);
    // A job resumed from a checkpoint that kept the folder's decomposed name goes on, composed.
    const resumed = await loadDataset(cfg, { dataRoot, inputSize: 8, classes: [decomposed, 'tea'] });
    expect(resumed.classes).toEqual([composed, 'tea']);
  });

  it("reads the split folders of downloaded data sets: Roboflow's train/valid/test, Kaggle's Training/Testing", async () => {
    const write = async (rel: string, rgb: Rgb) => writeImage(path.join(dataRoot, rel), solid(8, 8, rgb), 'png');
    const classes: [string, Rgb][] = [
      ['ant', [200, 0, 0]],
      ['bee', [0, 0, 200]],
    ];
    for (const [cls, rgb] of classes) {
      for (let k = 0; k < 4; k++) await write(`roboflow/train/${cls}/${k}.png`, rgb);
      for (let k = 0; k < 2; k++) await write(`roboflow/valid/${cls}/${k}.png`, rgb);
      await write(`roboflow/test/${cls}/0.png`, rgb);
      for (let k = 0; k < 3; k++) await write(`kaggle/Training/${cls}/${k}.png`, rgb);
      await write(`kaggle/Testing/${cls}/0.png`, rgb);
    }
    const roboflow = await loadDataset({ type: 'imagefolder', path: 'roboflow', valSplit: 0.5 }, { dataRoot, inputSize: 8 });
    expect(roboflow.classes).toEqual(['ant', 'bee']);
    expect([roboflow.train.length, roboflow.val.length]).toEqual([8, 4]); // valid/ validates; test/ stays unseen
    expect(roboflow.description).toBe('imagefolder roboflow: 2 classes, 8 train / 4 val (valid/; test/ unread)');
    // Until the thirty-ninth session these were two classes, "Testing" and "Training".
    const kaggle = await loadDataset({ type: 'imagefolder', path: 'kaggle', valSplit: 0.5 }, { dataRoot, inputSize: 8 });
    expect(kaggle.classes).toEqual(['ant', 'bee']);
    expect([kaggle.train.length, kaggle.val.length]).toEqual([6, 2]);
    expect(kaggle.description).toBe('imagefolder kaggle: 2 classes, 6 train / 2 val (Testing/)');
    // A class named "train" (bus/ train/ tram/) holds its photos itself: it is no split folder.
    for (const cls of ['bus', 'train', 'tram']) for (let k = 0; k < 2; k++) await write(`vehicles/${cls}/${k}.png`, [9, 9, 9]);
    const vehicles = await loadDataset({ type: 'imagefolder', path: 'vehicles', valSplit: 0.5 }, { dataRoot, inputSize: 8 });
    expect(vehicles.classes).toEqual(['bus', 'train', 'tram']);

    expect(splitLayout(['ants', 'bees'], 'x')).toEqual({ train: null, val: null, testUnread: null });
    expect(splitLayout(['TRAIN', 'notes'], 'x')).toEqual({ train: 'TRAIN', val: null, testUnread: null });
    expect(splitLayout(['train', 'validation', 'testing'], 'x')).toEqual({ train: 'train', val: 'validation', testUnread: 'testing' });
    expect(() => splitLayout(['Testing', 'extra'], 'x')).toThrow('dataset "x" has a Testing/ folder but no train/ folder beside it');
  });

  it("names the folder a zip wrapped the classes in, and passes over macOS's __MACOSX folder", async () => {
    // Archive Utility's zip of pets/ unpacks as pets/pets/<class>/ beside __MACOSX/pets/<class>/._*.
    const base = path.join(dataRoot, 'zipped');
    for (const cls of ['ant', 'bee']) {
      for (let k = 0; k < 2; k++) await writeImage(path.join(base, 'zipped', cls, `${k}.png`), solid(8, 8, [9, 9, 9]), 'png');
      await mkdir(path.join(base, '__MACOSX', 'zipped', cls), { recursive: true });
      await writeFile(path.join(base, '__MACOSX', 'zipped', cls, '._0.png'), 'resource fork');
    }
    await expect(loadDataset({ type: 'imagefolder', path: 'zipped', valSplit: 0.5 }, { dataRoot, inputSize: 8 })).rejects.toMatchObject({
      code: 'DATASET_EMPTY',
      message:
        'dataset "zipped" needs at least 2 class folders with images (<class>/*.jpg|png|webp|gif|tif|avif); found 1; ' +
        'its one folder "zipped" holds 2 folders (ant, bee): set dataset.path to "zipped/zipped" if those are the classes',
    });
    await rm(path.join(base, 'zipped'), { recursive: true });
    for (const cls of ['ant', 'bee']) for (let k = 0; k < 2; k++) await writeImage(path.join(base, cls, `${k}.png`), solid(8, 8, [9, 9, 9]), 'png');
    const warnings: DataWarning[] = [];
    const ds = await loadDataset({ type: 'imagefolder', path: 'zipped', valSplit: 0.5 }, { dataRoot, inputSize: 8, onWarning: (w) => warnings.push(w) });
    expect(ds.classes).toEqual(['ant', 'bee']);
    expect(warnings).toEqual([]); // no CLASS_EMPTY for __MACOSX
  });

  it('refuses paths outside the root and folders with fewer than two classes', async () => {
    await expect(loadDataset({ type: 'imagefolder', path: '../outside', valSplit: 0.1 }, { dataRoot, inputSize: 8 })).rejects.toMatchObject({
      code: 'DATASET_PATH_INVALID',
    });
    await expect(loadDataset({ type: 'imagefolder', path: 'flat/red', valSplit: 0.1 }, { dataRoot, inputSize: 8 })).rejects.toMatchObject({
      code: 'DATASET_EMPTY',
    });
    await expect(loadDataset({ type: 'imagefolder', path: 'phone', valSplit: 0.1 }, { dataRoot, inputSize: 8 })).rejects.toMatchObject({
      code: 'DATASET_EMPTY',
      message: expect.stringContaining('found 0, and skipped 6 image files in other formats (.heic 6)'),
    });
    // val/ without train/ would otherwise turn "val" into a class
    await expect(loadDataset({ type: 'imagefolder', path: 'split/val/..', valSplit: 0.1 }, { dataRoot, inputSize: 8 })).resolves.toBeTruthy();
    await writeImage(path.join(dataRoot, 'valonly/val/a/0.png'), solid(4, 4, [1, 1, 1]), 'png');
    await writeImage(path.join(dataRoot, 'valonly/b/0.png'), solid(4, 4, [1, 1, 1]), 'png');
    await expect(loadDataset({ type: 'imagefolder', path: 'valonly', valSplit: 0.1 }, { dataRoot, inputSize: 8 })).rejects.toThrow(/no train\/ folder/);
  });

  it('skips files and class folders whose names are not UTF-8, naming them, and says so when nothing else is left', async () => {
    // A zip made on an old Windows machine unpacks "café" as the Latin-1 bytes 63 61 66 E9.
    const base = path.join(dataRoot, 'latin1');
    const latin1 = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    const png = await solid(8, 8, [9, 9, 9]).png().toBuffer();
    for (const cls of ['red', 'green']) for (let k = 0; k < 3; k++) await writeImage(path.join(base, cls, `${k}.png`), solid(8, 8, [9, 9, 9]), 'png');
    await mkdir(latin1(base, '/caf', [0xe9]));
    for (let k = 0; k < 3; k++) await writeFile(latin1(base, '/caf', [0xe9], `/${k}.png`), png);
    await writeFile(latin1(base, '/green/', 'photo', [0xe9], '.png'), png);
    await writeFile(latin1(base, '/green/Notiz', [0xe4], '.txt'), 'a note, none of the data set');

    const warnings: DataWarning[] = [];
    const ds = await loadDataset({ type: 'imagefolder', path: 'latin1', valSplit: 0.3 }, { dataRoot, inputSize: 8, onWarning: (w) => warnings.push(w) });
    expect(ds.classes).toEqual(['green', 'red']);
    expect(ds.train.length + ds.val.length).toBe(6);
    expect(warnings.map((w) => w.code)).toEqual(['NAME_NOT_UTF8']);
    expect(warnings[0].message).toBe(
      `skipped 2 files and folders whose names are not UTF-8 (${path.join(base, 'caf\\xE9')}, ${path.join(base, 'green', 'photo\\xE9.png')}): ` +
        "another system's encoding (an old archive's, Windows's Latin-1); rename them in UTF-8 to train on them, e.g. convmv -f latin1 -t utf8 -r --notest <folder>",
    );

    // Only one class left readable: refused, saying what was skipped.
    await rm(path.join(base, 'green'), { recursive: true });
    await expect(loadDataset({ type: 'imagefolder', path: 'latin1', valSplit: 0.3 }, { dataRoot, inputSize: 8 })).rejects.toMatchObject({
      code: 'DATASET_EMPTY',
      message: expect.stringContaining(`found 1, and skipped 1 file or folder whose name is not UTF-8 (${path.join(base, 'caf\\xE9')})`),
    });
  });

  // Root reads every folder: the worker's own user (a container's) is played by nobody.
  it.runIf(process.getuid?.() === 0)('fails DATASET_UNREADABLE naming a class folder the worker may not list, instead of training without it', async () => {
    const base = path.join(dataRoot, 'locked');
    for (const cls of ['open', 'shut']) for (let k = 0; k < 2; k++) await writeImage(path.join(base, cls, `${k}.png`), solid(8, 8, [9, 9, 9]), 'png');
    for (const dir of [tmp, dataRoot, base, path.join(base, 'open')]) await chmod(dir, 0o755);
    await chmod(path.join(base, 'shut'), 0o700);
    const index = new URL('../../src/data/index.ts', import.meta.url).pathname;
    const script =
      `const { loadDataset } = await import(${JSON.stringify(index)});` +
      `try { await loadDataset({ type: 'imagefolder', path: 'locked', valSplit: 0.3 }, { dataRoot: ${JSON.stringify(dataRoot)}, inputSize: 8 }); console.log('{}'); }` +
      `catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const run = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script],
      {
        encoding: 'utf8',
        env: { ...process.env, HOME: os.tmpdir() },
      },
    );
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1)!)).toEqual({
      code: 'DATASET_UNREADABLE',
      message: `cannot list the folder ${path.join(base, 'shut')} (this process runs as uid 65534): EACCES: permission denied, scandir '${path.join(base, 'shut')}'`,
    });
  });

  it('decodes once and caches; a file that turns out corrupt later is skipped with a warning and replaced by a same-class image', async () => {
    const root2 = path.join(dataRoot, 'lazy');
    for (let k = 0; k < 3; k++) {
      await writeImage(path.join(root2, 'a', `${k}.png`), solid(12, 12, [250, 0, 0]), 'png');
      await writeImage(path.join(root2, 'b', `${k}.png`), solid(12, 12, [0, 0, 250]), 'png');
    }
    // a JPEG whose header is fine but whose data is cut short: passes the load-time header check
    await writeFile(path.join(root2, 'b', '9-truncated.jpg'), await truncatedJpeg());
    const warnings: DataWarning[] = [];
    const ds = await loadDataset({ type: 'imagefolder', path: 'lazy', valSplit: 0.3 }, { dataRoot, inputSize: 8, onWarning: (w) => warnings.push(w) });
    expect(ds.stats.skipped).toBe(0);
    const all = Array.from({ length: ds.train.length }, (_, i) => i);
    const first = await ds.train.batch(all, noAug);
    // delete every file: a second pass must come from the cache, bit for bit
    await rm(path.join(root2, 'a'), { recursive: true });
    const second = await ds.train.batch(all, noAug);
    expect(second.x).toEqual(first.x);

    expect(ds.train.length + ds.val.length).toBe(7); // the truncated file passed the header check
    expect(ds.stats.skipped).toBe(1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ code: 'IMAGE_UNREADABLE' });
    expect(warnings[0].message).toContain('9-truncated.jpg');
    // the broken sample still yields a blue image of its own class
    for (let k = 0; k < first.n; k++) {
      if (first.y[k] !== 1) continue;
      const off = k * 8 * 8 * 3;
      expect([0, 1, 2].map((c) => toByte(first.x[off + c], c))).toEqual([0, 0, 250]);
    }
    await unlink(path.join(root2, 'b', '9-truncated.jpg'));
  });
});
