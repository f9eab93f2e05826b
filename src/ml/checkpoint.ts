// Checkpoints: a directory holding `checkpoint.json` (a plain record: step, epoch, config, classes,
// backend, activation ranges, data position, and an index of tensors) and `weights.bin` (every
// tensor as float32, concatenated, little-endian; name/shape/offset in the index).
//
// Atomic: written to `<dir>/.tmp-<step>`, flushed, then renamed to `<dir>/step-<000000>`. A crash
// mid-write leaves only a `.tmp-*` directory, which loaders ignore and the next save removes. The
// manifest carries the byte size and sha256 of weights.bin, so a truncated or foreign file fails
// validation instead of loading garbage.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { syncDir } from '../artifacts/durable.js';
import type { TrainingConfig } from '../config/training-config.js';
import type { BackendName } from './train-api.js';

export const CHECKPOINT_FORMAT = 'qatserve-checkpoint';
export const CHECKPOINT_VERSION = 1;

export class CheckpointError extends Error {
  constructor(
    readonly code: 'CHECKPOINT_NOT_FOUND' | 'CHECKPOINT_INVALID' | 'CHECKPOINT_MISMATCH',
    message: string,
  ) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export interface TensorIndexEntry {
  name: string;
  shape: number[];
  /** Byte offset in weights.bin. */
  offset: number;
}

export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  createdAt: string;
  /** Completed optimizer steps. */
  step: number;
  /** 1-based epoch of the last completed step (0 before any step). */
  epoch: number;
  stepsPerEpoch: number;
  backend: BackendName;
  config: TrainingConfig;
  classes: string[];
  inputSize: number;
  normalization: { mean: [number, number, number]; std: [number, number, number] };
  /** Activation ranges (EMA of batch min/max) per quantization point. */
  ranges: Record<string, number[]>;
  /**
   * Where the data stream stands. Order and augmentation are pure functions of (seed, epoch, step),
   * so this position is the whole RNG state.
   */
  data: { seed: number; epochIndex: number; stepInEpoch: number };
  tensors: TensorIndexEntry[];
  weightsBytes: number;
  weightsSha256: string;
}

export type CheckpointMeta = Omit<CheckpointManifest, 'format' | 'version' | 'createdAt' | 'tensors' | 'weightsBytes' | 'weightsSha256'>;

export interface NamedArray {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface LoadedCheckpoint {
  dir: string;
  manifest: CheckpointManifest;
  tensors: Map<string, NamedArray>;
}

export function checkpointDirName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

const STEP_DIR = /^step-(\d+)$/;

/** Writes a checkpoint atomically and prunes to the newest `keep`. Returns the final directory. */
export async function saveCheckpoint(checkpointsDir: string, meta: CheckpointMeta, tensors: NamedArray[], keep: number): Promise<string> {
  await fs.mkdir(checkpointsDir, { recursive: true });
  const index: TensorIndexEntry[] = [];
  let bytes = 0;
  for (const t of tensors) {
    index.push({ name: t.name, shape: t.shape, offset: bytes });
    bytes += t.data.length * 4;
  }
  const buf = Buffer.alloc(bytes);
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    const view = new Float32Array(buf.buffer, buf.byteOffset + index[i].offset, t.data.length);
    view.set(t.data);
  }
  const manifest: CheckpointManifest = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    createdAt: new Date().toISOString(),
    ...meta,
    tensors: index,
    weightsBytes: bytes,
    weightsSha256: createHash('sha256').update(buf).digest('hex'),
  };
  const tmp = path.join(checkpointsDir, `.tmp-${meta.step}-${process.pid}`);
  const final = path.join(checkpointsDir, checkpointDirName(meta.step));
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(tmp);
  await writeDurably(path.join(tmp, 'weights.bin'), buf);
  // The manifest goes last: a directory without it is never a checkpoint.
  await writeDurably(path.join(tmp, 'checkpoint.json'), Buffer.from(JSON.stringify(manifest)));
  await syncDir(tmp);
  // Re-saving the same step (stop right after an epoch-end save) replaces the older copy.
  await fs.rm(final, { recursive: true, force: true });
  await fs.rename(tmp, final);
  // The rename itself lives in the parent directory: without this a power cut after the job
  // recorded the checkpoint can bring back a directory that has no step-<n> entry.
  await syncDir(checkpointsDir);
  await pruneCheckpoints(checkpointsDir, keep);
  return final;
}

async function writeDurably(file: string, data: Buffer): Promise<void> {
  const fh = await fs.open(file, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Step numbers of the finished checkpoints in `checkpointsDir`, newest first. */
export async function listCheckpoints(checkpointsDir: string): Promise<{ step: number; dir: string }[]> {
  let names: string[];
  try {
    names = await fs.readdir(checkpointsDir);
  } catch {
    return [];
  }
  return names
    .map((n) => ({ m: STEP_DIR.exec(n), n }))
    .filter((e) => e.m)
    .map((e) => ({ step: Number(e.m![1]), dir: path.join(checkpointsDir, e.n) }))
    .sort((a, b) => b.step - a.step);
}

async function pruneCheckpoints(checkpointsDir: string, keep: number): Promise<void> {
  const all = await listCheckpoints(checkpointsDir);
  for (const old of all.slice(keep)) await fs.rm(old.dir, { recursive: true, force: true });
  // Leftovers of crashed saves by any process.
  for (const n of await fs.readdir(checkpointsDir)) {
    if (n.startsWith('.tmp-') && !n.endsWith(`-${process.pid}`)) {
      await fs.rm(path.join(checkpointsDir, n), { recursive: true, force: true });
    }
  }
}

/** Loads and validates one checkpoint directory (one holding checkpoint.json). */
export async function loadCheckpointDir(dir: string): Promise<LoadedCheckpoint> {
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(await fs.readFile(path.join(dir, 'checkpoint.json'), 'utf8')) as CheckpointManifest;
  } catch (e) {
    throw new CheckpointError('CHECKPOINT_INVALID', `${dir}: unreadable checkpoint.json (${(e as Error).message})`);
  }
  if (manifest.format !== CHECKPOINT_FORMAT || manifest.version !== CHECKPOINT_VERSION) {
    throw new CheckpointError('CHECKPOINT_INVALID', `${dir}: not a ${CHECKPOINT_FORMAT} v${CHECKPOINT_VERSION}`);
  }
  const buf = await fs.readFile(path.join(dir, 'weights.bin')).catch(() => null);
  if (!buf || buf.length !== manifest.weightsBytes) {
    throw new CheckpointError('CHECKPOINT_INVALID', `${dir}: weights.bin missing or not ${manifest.weightsBytes} bytes`);
  }
  if (createHash('sha256').update(buf).digest('hex') !== manifest.weightsSha256) {
    throw new CheckpointError('CHECKPOINT_INVALID', `${dir}: weights.bin checksum mismatch`);
  }
  // Copy into an aligned buffer (Buffer's byteOffset need not be a multiple of 4).
  const all = new Float32Array(new Uint8Array(buf).buffer);
  const tensors = new Map<string, NamedArray>();
  for (const t of manifest.tensors) {
    const len = t.shape.reduce((a, b) => a * b, 1);
    if (t.offset % 4 !== 0 || t.offset + len * 4 > buf.length) {
      throw new CheckpointError('CHECKPOINT_INVALID', `${dir}: tensor ${t.name} out of bounds`);
    }
    tensors.set(t.name, { name: t.name, shape: t.shape, data: all.subarray(t.offset / 4, t.offset / 4 + len) });
  }
  return { dir, manifest, tensors };
}

/**
 * Accepts a checkpoint directory, a run's `checkpoints/` directory, or a run's work directory, and
 * loads the newest valid checkpoint found there (invalid ones, e.g. half-copied, are skipped).
 */
export async function loadCheckpoint(location: string): Promise<LoadedCheckpoint> {
  const direct = await fs.stat(path.join(location, 'checkpoint.json')).catch(() => null);
  if (direct) return loadCheckpointDir(location);
  for (const base of [location, path.join(location, 'checkpoints')]) {
    const errors: string[] = [];
    for (const c of await listCheckpoints(base)) {
      try {
        return await loadCheckpointDir(c.dir);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    if (errors.length > 0) throw new CheckpointError('CHECKPOINT_INVALID', errors.join('; '));
  }
  throw new CheckpointError('CHECKPOINT_NOT_FOUND', `no checkpoint under ${location}`);
}
