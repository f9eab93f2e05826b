// The `imagefolder` data set: `root/<class>/**/*` (validation held out per class) or
// `root/train/<class>/**/*` + `root/val/<class>/**/*`. JPEG, PNG, WebP, GIF, TIFF and AVIF, chosen
// by extension and confirmed by reading the header at load. Pixels are decoded lazily, the first
// time a batch needs them, and kept (within a byte budget) so later epochs never decode again.
import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { SourceImage } from './augment.js';
import { DatasetError, type DataWarning } from './errors.js';
import { cachedBytes, type ByteBudget } from './byte-cache.js';
import { DECODED_FORMATS, decodeImageToRgb, scalableShape, unscalableShape, undecodableReason } from './image-decode.js';
import { Rng, hashSeed, shuffleInPlace } from './rng.js';
import { isInside, nfc, resolveUnderRoot } from './safe-path.js';

/**
 * What training reads: the formats /v1/predict decodes (one decoder, src/data/image-decode.ts),
 * so a folder a user can classify image by image also trains. GIF gives its first frame.
 */
const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);
/**
 * Images in formats neither training nor /v1/predict decodes (iPhones save HEIC, whose HEVC codec
 * sharp's build lacks; BMP, JPEG 2000 and camera raw it does not read): counted and named in a
 * warning, so a class that lost most of its photos says why. Other files (notes, annotations) are
 * passed over in silence.
 */
const OTHER_IMAGE_EXTENSIONS = new Set(['.heic', '.heif', '.bmp', '.jp2', '.dng', '.cr2', '.nef', '.arw']);
/** A file's extension as the sets above hold them: `.jpg` of `IMG_1.JPG`. */
const extensionOf = (name: string) => path.extname(name).toLowerCase();
/**
 * The names a split's folder goes by in the data sets users download, compared lower-cased:
 * torchvision's train/ and val/, Roboflow's valid/, Kaggle's Training/ and Testing/.
 */
const SPLIT_NAMES = { train: ['train', 'training'], val: ['val', 'valid', 'validation'], test: ['test', 'testing'] } as const;
const HOLDOUT_STREAM = 0x4f1d;
const MAX_DEPTH = 8;
/** Parallel header reads at load; sharp's own pool (libuv, 4 threads) bounds the real work. */
const HEADER_CONCURRENCY = 8;

export interface FolderStats {
  /** Files skipped because they could not be read or decoded (at load or later, lazily). */
  skipped: number;
}

export interface LabelledFiles {
  files: string[];
  labels: Int32Array;
}

export interface ScannedFolder {
  root: string;
  classes: string[];
  train: LabelledFiles;
  val: LabelledFiles;
  /** The folder the validation split was read from (val/, or test/ when there is no val/); null when held out of the training files. */
  valFrom: string | null;
  /** A test/ folder beside train/ and val/, left unread: a test split stays unseen by training. */
  testUnread: string | null;
}

type Warn = (w: DataWarning) => void;
/** For reads whose findings are not reported (a refusal's hint). */
const NO_WARNINGS: Warn = () => {};

/** 32-bit FNV-1a of a string, so a class name can seed its hold-out shuffle. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Code-unit order: the same on every machine and locale (localeCompare is not). */
const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** What macOS's Archive Utility adds to a zip beside the folder: its `._` copies, none of the data set. */
const MACOS_ZIP_FOLDER = Buffer.from('__MACOSX');

/** A folder entry whose name is text. */
interface Entry {
  name: string;
  dirent: Dirent<Buffer>;
}

/** What a scan passed over, each kind told in one warning at its end. */
interface Unread {
  /** OTHER_IMAGE_EXTENSIONS found, by extension. */
  formats: Map<string, number>;
  /** Files and folders whose names are not UTF-8, their paths with the bad bytes escaped. */
  names: string[];
}

/** One walk of a data set's folders. */
interface Walk {
  /** The real path symlinks must stay inside (the data root). */
  root: string;
  warn: Warn;
  unread: Unread;
  /** A cancelled job's: a walk of a million files stops at the next folder or header. */
  signal?: AbortSignal;
}

const newWalk = (root: string, warn: Warn, signal?: AbortSignal): Walk => ({ root, warn, unread: { formats: new Map(), names: [] }, signal });

/** `caf\xE9`: the name's bytes as ASCII, every other byte escaped, so a log and a JSON body can show it. */
function escapedName(raw: Buffer): string {
  return [...raw].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}

/**
 * The entries of `dir` a data set is made of, sorted by name. Hidden ones (.DS_Store, macOS's ._
 * files) are left out; so are names that are not UTF-8 (a Latin-1 "café" from an old archive),
 * counted in `unread`: such a folder cannot be a label nor such a file be opened by the decoder,
 * which take text paths. A folder that cannot be listed fails the data set, naming it: a class
 * silently missing from the model would be worse.
 */
async function listDir(dir: string, unread?: Unread): Promise<Entry[]> {
  let dirents: Dirent<Buffer>[];
  try {
    dirents = await readdir(dir, { withFileTypes: true, encoding: 'buffer' });
  } catch (err) {
    const who = typeof process.getuid === 'function' ? ` (this process runs as uid ${process.getuid()})` : '';
    throw new DatasetError('DATASET_UNREADABLE', `cannot list the folder ${dir}${who}: ${(err as Error).message}`);
  }
  const entries: Entry[] = [];
  for (const dirent of dirents) {
    if (dirent.name[0] === 0x2e || MACOS_ZIP_FOLDER.equals(dirent.name)) continue; // '.'
    let name: string;
    try {
      name = UTF8.decode(dirent.name);
    } catch {
      // A note or a sidecar file in a legacy encoding is none of the data set's business.
      const image = IMAGE_EXTENSIONS.has(extensionOf(dirent.name.toString('latin1')));
      if (!dirent.isFile() || image) unread?.names.push(path.join(dir, escapedName(dirent.name)));
      continue;
    }
    entries.push({ name, dirent });
  }
  return entries.sort((a, b) => byName(a.name, b.name));
}

/** Entry kind after following a symlink, or null when the link leaves the root (warned) or dangles. */
async function kindOf({ root, warn }: Walk, dir: string, { name, dirent: e }: Entry): Promise<'dir' | 'file' | null> {
  if (e.isDirectory()) return 'dir';
  if (e.isFile()) return 'file';
  if (!e.isSymbolicLink()) return null;
  const full = path.join(dir, name);
  try {
    const real = await realpath(full);
    if (!isInside(root, real)) {
      warn({ code: 'SYMLINK_OUTSIDE_ROOT', message: `skipped ${full}: symlink leads outside the data root` });
      return null;
    }
    const st = await stat(real);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : null;
  } catch {
    return null;
  }
}

/** Image files under `dir`, recursively, sorted by path relative to `dir`; what it passes over goes in `walk.unread`. */
async function imageFilesUnder(walk: Walk, dir: string, depth = 0): Promise<string[]> {
  walk.signal?.throwIfAborted();
  const { formats } = walk.unread;
  const out: string[] = [];
  for (const e of await listDir(dir, walk.unread)) {
    const kind = await kindOf(walk, dir, e);
    const full = path.join(dir, e.name);
    const ext = extensionOf(e.name);
    if (kind === 'dir' && depth < MAX_DEPTH) out.push(...(await imageFilesUnder(walk, full, depth + 1)));
    else if (kind === 'file' && IMAGE_EXTENSIONS.has(ext)) out.push(full);
    else if (kind === 'file' && OTHER_IMAGE_EXTENSIONS.has(ext)) formats.set(ext, (formats.get(ext) ?? 0) + 1);
  }
  return out;
}

/** "280 image files in other formats (.heic 270, .gif 10)", most frequent first; '' for none. */
function formatsSummary(formats: ReadonlyMap<string, number>): string {
  const total = [...formats.values()].reduce((a, b) => a + b, 0);
  if (total === 0) return '';
  const byCount = [...formats].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  return `${total} image file${total === 1 ? '' : 's'} in other formats (${byCount.map(([ext, n]) => `${ext} ${n}`).join(', ')})`;
}

/** "2 files and folders whose names are not UTF-8 (/data/pets/caf\xE9, ...)", the first 3 named; '' for none. */
function namesSummary(names: readonly string[]): string {
  if (names.length === 0) return '';
  const shown = names.slice(0, 3).join(', ') + (names.length > 3 ? ', ...' : '');
  const what = names.length === 1 ? 'file or folder whose name is' : 'files and folders whose names are';
  return `${names.length} ${what} not UTF-8 (${shown})`;
}

/** Names of the folders in `dir` (symlinks followed while they stay in the root): the class folders. */
async function folderNames(walk: Walk, dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const e of await listDir(dir, walk.unread)) if ((await kindOf(walk, dir, e)) === 'dir') names.push(e.name);
  return names;
}

/**
 * The class folders of `dir`, each with its image files, named by their text in composed Unicode
 * (NFC): a folder made on a Mac keeps its decomposed name (NFD) when copied or unzipped here, and
 * its class would otherwise be a label no client's "café" equals, and unlike the same class in a
 * val/ made here. Two folders of one text (one of each form) are one class.
 */
async function classFolders(walk: Walk, dir: string): Promise<Map<string, string[]>> {
  const classes = new Map<string, string[]>();
  for (const name of await folderNames(walk, dir)) {
    const files = await imageFilesUnder(walk, path.join(dir, name));
    const key = nfc(name);
    classes.set(key, [...(classes.get(key) ?? []), ...files]);
  }
  return classes;
}

/** Warns once per kind of what a walk passed over; returns those summaries ("3 image files in other formats (.heic 3)"). */
function warnUnread({ unread, warn }: Walk): string[] {
  const formats = formatsSummary(unread.formats);
  if (formats) {
    warn({ code: 'FORMAT_UNREAD', message: `skipped ${formats}: only JPEG, PNG, WebP, GIF, TIFF and AVIF are read; convert them to train on them` });
  }
  const names = namesSummary(unread.names);
  if (names) {
    warn({
      code: 'NAME_NOT_UTF8',
      message: `skipped ${names}: another system's encoding (an old archive's, Windows's Latin-1); rename them in UTF-8 to train on them, e.g. convmv -f latin1 -t utf8 -r --notest <folder>`,
    });
  }
  return [formats, names].filter(Boolean);
}

/**
 * A zip of a folder often unpacks into a folder of the same name: `pets/pets/<class>/`. When the
 * data set's only folder holds class folders itself, the refusal names the path that was meant.
 * Folders are read by their names on disk here (the class map's keys are their NFC text).
 */
async function wrappedHint(rootReal: string, root: string, relPath: string): Promise<string> {
  const names = (dir: string) => folderNames(newWalk(rootReal, NO_WARNINGS), dir).catch(() => [] as string[]);
  const top = await names(root);
  if (top.length !== 1) return '';
  const classes = await names(path.join(root, top[0]));
  if (classes.length < 2) return '';
  return `; its one folder "${top[0]}" holds ${classes.length} folders (${classes.slice(0, 3).join(', ')}${classes.length > 3 ? ', ...' : ''}): set dataset.path to "${path.join(relPath, top[0])}" if those are the classes`;
}

/**
 * The class folders of `dir` and the image files under each, read as training reads a split's
 * folder: hidden files left out, subfolders followed, symlinks only within `dir`, what it passes
 * over warned about. `qatserve eval` scores a model on such a folder (a data set's test/).
 */
export async function readClassFolders(dir: string, warn: Warn): Promise<Map<string, string[]>> {
  const walk = newWalk(await realpath(dir), warn);
  const classes = await classFolders(walk, dir);
  warnUnread(walk);
  return classes;
}

/**
 * A data set's split folders among the folder names at its top: the training folder's name (null:
 * the top holds the class folders), the validation folder's (val/, else test/; null: held out of
 * training) and a test folder's left unread. Throws when a val/ or test/ folder has no train/.
 */
export function splitLayout(topFolders: readonly string[], relPath: string): { train: string | null; val: string | null; testUnread: string | null } {
  const find = (names: readonly string[]) => topFolders.find((n) => names.includes(n.toLowerCase())) ?? null;
  const train = find(SPLIT_NAMES.train);
  const val = find(SPLIT_NAMES.val);
  const test = find(SPLIT_NAMES.test);
  if (!train && (val ?? test)) {
    throw new DatasetError('DATASET_EMPTY', `dataset "${relPath}" has a ${val ?? test}/ folder but no train/ folder beside it`);
  }
  return { train, val: train ? (val ?? test) : null, testUnread: train && val ? test : null };
}

/** The names of the real folders (not links) in `dir`. */
const topFolders = async (dir: string) => (await listDir(dir)).filter((e) => e.dirent.isDirectory()).map((e) => e.name);

/**
 * The layout of the data set in `folder`: splitLayout's, unless its training folder holds images
 * itself. Then it is a class (`bus/ train/ tram/`), and the top holds the class folders.
 */
async function folderLayout(folder: string, relPath: string): Promise<ReturnType<typeof splitLayout>> {
  const layout = splitLayout(await topFolders(folder), relPath);
  if (!layout.train) return layout;
  const inTrain = await listDir(path.join(folder, layout.train));
  const images = inTrain.some((e) => e.dirent.isFile() && IMAGE_EXTENSIONS.has(extensionOf(e.name)));
  return images ? { train: null, val: null, testUnread: null } : layout;
}

/**
 * How many class folders the data set in `folder` (resolved under `dataRoot`) has, reading no
 * image: an upper bound on its classes (a folder without a readable image is not one), so the API
 * can size the job's classifier head before it is queued. Null when the folder cannot be listed
 * (the job itself then says why).
 */
export async function countClassFolders(dataRoot: string, folder: string): Promise<number | null> {
  try {
    const { train } = await folderLayout(folder, folder);
    return (
      await folderNames(
        newWalk(await realpath(dataRoot), () => {}),
        train ? path.join(folder, train) : folder,
      )
    ).length;
  } catch {
    return null;
  }
}

/** Read each header; keep files sharp recognises in an accepted format with a size, warn about the rest. */
async function validateHeaders(files: string[], { warn, signal }: Walk, stats: FolderStats, onRead: () => void): Promise<boolean[]> {
  const ok = new Array<boolean>(files.length).fill(false);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      signal?.throwIfAborted();
      const i = next++;
      try {
        const meta = await sharp(files[i]).metadata();
        if (!meta.format || !DECODED_FORMATS.has(meta.format)) throw new Error(`unsupported format ${meta.format ?? 'unknown'}`);
        const undecodable = undecodableReason(meta);
        if (undecodable) throw new Error(undecodable);
        if (!meta.width || !meta.height) throw new Error('no image size in header');
        if (!scalableShape(meta.width, meta.height)) throw new Error(unscalableShape(meta.width, meta.height));
        ok[i] = true;
      } catch (err) {
        stats.skipped++;
        warn({ code: 'IMAGE_UNREADABLE', message: `skipped ${files[i]}: ${(err as Error).message}` });
      }
      onRead();
    }
  };
  await Promise.all(Array.from({ length: Math.min(HEADER_CONCURRENCY, files.length) }, worker));
  return ok;
}

/** Deterministic per-class hold-out: shuffle the sorted names with a seed from the class name. */
export function holdOut(files: string[], className: string, valSplit: number): { train: string[]; val: string[] } {
  const sorted = [...files].sort(byName);
  if (sorted.length < 2) return { train: sorted, val: [] };
  const nVal = Math.min(sorted.length - 1, Math.max(1, Math.round(sorted.length * valSplit)));
  const shuffled = shuffleInPlace([...sorted], new Rng(hashSeed(HOLDOUT_STREAM, hashString(className))));
  const val = new Set(shuffled.slice(0, nVal));
  return { train: sorted.filter((f) => !val.has(f)), val: sorted.filter((f) => val.has(f)) };
}

function labelled(classes: string[], byClass: Map<string, string[]>): LabelledFiles {
  const files: string[] = [];
  const labels: number[] = [];
  classes.forEach((name, label) => {
    for (const f of byClass.get(name) ?? []) {
      files.push(f);
      labels.push(label);
    }
  });
  return { files, labels: Int32Array.from(labels) };
}

export interface ScanOptions {
  warn: Warn;
  stats: FolderStats;
  /** Hears the headers read of all the files found, after each (65,000 files: 14 s). */
  onProgress?: (done: number, total: number) => void;
  /** Aborted: the scan throws the signal's reason at its next folder or header. */
  signal?: AbortSignal;
  /** The classes a resumed job trained on (its checkpoint's), in its order: see keepClasses. */
  classes?: readonly string[];
}

/**
 * A resumed job's image folder may have changed since the job started (a sync still running, a
 * class folder added or removed, another worker's copy): its classifier has one output per class
 * it started with, in that order. Class folders added since are left out, with a CLASS_ADDED
 * warning; a class it trained on that is gone fails DATASET_CHANGED, saying which and what to do.
 * Until the fortieth session either failed the resumed job CHECKPOINT_MISMATCH "classes differ".
 */
function keepClasses(trainByClass: Map<string, string[]>, valByClass: Map<string, string[]>, classes: readonly string[], relPath: string, warn: Warn): void {
  const added = [...trainByClass.keys()].filter((name) => !classes.includes(name));
  for (const byClass of [trainByClass, valByClass]) for (const name of [...byClass.keys()]) if (!classes.includes(name)) byClass.delete(name);
  if (added.length) {
    warn({
      code: 'CLASS_ADDED',
      message: `class folder(s) ${quoteList(added)} appeared in "${relPath}" after this job started: it goes on with the ${classes.length} classes it started with`,
    });
  }
}

/**
 * A resumed job's classes, each still with readable training images, in its order; else the
 * DATASET_CHANGED refusal naming the ones gone (keepClasses).
 */
function classesStill(byClass: Map<string, string[]>, classes: readonly string[], relPath: string): string[] {
  const missing = classes.filter((name) => !byClass.get(name)?.length);
  if (missing.length === 0) return [...classes];
  throw new DatasetError(
    'DATASET_CHANGED',
    `the image folder "${relPath}" no longer has readable images of class(es) ${quoteList(missing)}, which this job trained on (${classes.length} classes): ` +
      'restore them to resume the job, or post a new job with "init": {"fromJob": "<this job\'s id>"} to train on the folder as it is now from this job\'s weights',
  );
}

const quoteList = (names: string[]) => names.map((n) => `"${n}"`).join(', ');

/** Walk the folder, validate headers and build the train/val file lists. No pixels are decoded. */
export async function scanImageFolder(dataRoot: string, relPath: string, valSplit: number, opts: ScanOptions): Promise<ScannedFolder> {
  const { warn, stats, onProgress } = opts;
  const root = await resolveUnderRoot(dataRoot, relPath);
  const rootReal = await realpath(dataRoot);
  const layout = await folderLayout(root, relPath);

  const walk = newWalk(rootReal, warn, opts.signal);
  const trainByClass = await classFolders(walk, layout.train ? path.join(root, layout.train) : root);
  const valByClass = layout.val ? await classFolders(walk, path.join(root, layout.val)) : new Map<string, string[]>();
  // A checkpoint written before class names were composed (NFC) names them as their folders did.
  const resumed = opts.classes?.map(nfc);
  if (resumed) keepClasses(trainByClass, valByClass, resumed, relPath, warn);
  const skipped = warnUnread(walk);

  // Drop files whose header is not a readable image before anything depends on the lists.
  let read = 0;
  const total = [...trainByClass.values(), ...valByClass.values()].reduce((n, files) => n + files.length, 0);
  onProgress?.(0, total);
  const onRead = () => onProgress?.(++read, total);
  const filter = async (byClass: Map<string, string[]>) => {
    for (const [name, files] of byClass) {
      const ok = await validateHeaders(files, walk, stats, onRead);
      byClass.set(
        name,
        files.filter((_, i) => ok[i]),
      );
    }
  };
  await filter(trainByClass);
  await filter(valByClass);

  const classes = resumed
    ? classesStill(trainByClass, resumed, relPath)
    : [...trainByClass.keys()].filter((name) => {
        if ((trainByClass.get(name) ?? []).length > 0) return true;
        warn({ code: 'CLASS_EMPTY', message: `class folder "${name}" has no readable training images; it is not a class` });
        return false;
      });
  for (const name of valByClass.keys()) {
    if (!classes.includes(name)) {
      warn({ code: 'CLASS_EMPTY', message: `validation folder "${name}" has no matching training class; ignored` });
    }
  }
  if (classes.length < 2) {
    throw new DatasetError(
      'DATASET_EMPTY',
      `dataset "${relPath}" needs at least 2 class folders with images (${layout.train ? `${layout.train}/<class>/` : '<class>/'}*.jpg|png|webp|gif|tif|avif); found ${classes.length}` +
        skipped.map((what) => `, and skipped ${what}`).join('') +
        (layout.train ? '' : await wrappedHint(rootReal, root, relPath)),
    );
  }

  if (!layout.val) {
    for (const name of classes) {
      const { train, val } = holdOut(trainByClass.get(name)!, name, valSplit);
      trainByClass.set(name, train);
      valByClass.set(name, val);
    }
  }
  return { root, classes, train: labelled(classes, trainByClass), val: labelled(classes, valByClass), valFrom: layout.val, testUnread: layout.testUnread };
}

/**
 * Lazily decoding getter over `files`. A file that fails to decode is warned about once, counted,
 * and replaced by the next readable image of the same class, so batches keep their shape and a
 * resumed run sees the same substitute.
 */
export function folderGetter(list: LabelledFiles, size: number, budget: ByteBudget, warn: Warn, stats: FolderStats): (i: number) => Promise<SourceImage> {
  const { files, labels } = list;
  const bad = new Uint8Array(files.length);
  const sameClass = new Map<number, number[]>();
  const posInClass = new Int32Array(files.length);
  labels.forEach((label, i) => {
    const arr = sameClass.get(label) ?? [];
    posInClass[i] = arr.length;
    arr.push(i);
    sameClass.set(label, arr);
  });

  const load = cachedBytes(files.length, (i) => decodeImageToRgb(files[i], size), budget);
  const decode = (i: number): Promise<Uint8Array | null> =>
    bad[i]
      ? Promise.resolve(null)
      : load(i).catch((err: Error) => {
          if (!bad[i]) {
            // concurrent requests for one file share the failure: warn and count it once
            bad[i] = 1;
            stats.skipped++;
            warn({ code: 'IMAGE_UNREADABLE', message: `skipped ${files[i]}: ${err.message}` });
          }
          return null;
        });

  return async (i) => {
    const peers = sameClass.get(labels[i])!;
    const start = posInClass[i];
    for (let k = 0; k < peers.length; k++) {
      const j = peers[(start + k) % peers.length];
      const rgb = await decode(j);
      if (rgb) return { data: rgb, side: size, channels: 3 };
    }
    // Named by its folder: the index alone told the user nothing (a class folder deleted mid-run).
    throw new DatasetError(
      'DATASET_EMPTY',
      `none of the ${peers.length} image(s) of class ${labels[i]} (in ${path.dirname(files[i])}) can be decoded: moved, deleted or damaged since the folder was scanned; restore them, or post the job again`,
    );
  };
}
