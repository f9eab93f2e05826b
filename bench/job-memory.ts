// What a training job needs, measured on the real trainer: for a grid of (width, input size,
// batch), one process per config trains a few steps (float, then QAT), evaluates, exports and
// verifies the int8 model, and reports its wasm heap (the memory the 4 GiB wasm32 limit applies
// to), its peak RSS, and the checkpoint and model sizes. The parent prints them beside the
// estimates of src/jobs/job-admission.ts (whose constants are upper envelopes of these figures)
// and a least-squares fit of the training heap, to re-derive the constants when the trainer changes.
//
//   npx tsx bench/job-memory.ts                 # the grid (about 5 minutes on 2 cores)
//   npx tsx bench/job-memory.ts --only 1x224x16 # one config
//   npx tsx bench/job-memory.ts --only 1x224x32 --folder /data/imagenet-1k
//                                               # an image folder's classes (synthetic has 10; a
//                                               # classifier head of 1,000 classes adds 1.28M parameters)
//
// One line per config, then the fits and the largest measured/estimated ratio.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { archOf, activationsPerImage, estimateJob, parameterCount } from '../src/jobs/job-admission.js';
import { resolveTrainingConfig, type TrainingConfig } from '../src/config/training-config.js';

const GRID: Array<[number, number, number]> = [
  [0.35, 32, 16],
  [0.35, 32, 64],
  [0.35, 32, 256],
  [1.0, 32, 32],
  [1.0, 32, 128],
  [0.35, 96, 32],
  [0.35, 96, 128],
  [0.5, 160, 32],
  [1.0, 128, 16],
  [1.0, 128, 48],
  [1.0, 224, 4],
  [1.0, 224, 8],
  [1.0, 224, 16],
  [1.0, 224, 31],
  [1.0, 224, 40],
];

interface Sample {
  w: number;
  size: number;
  bs: number;
  ok: boolean;
  error?: string;
  heapTrainBytes?: number;
  heapExportBytes?: number;
  maxRssBytes?: number;
  checkpointBytes?: number;
  modelDirBytes?: number;
}

/** `folder`: an image folder (its parent is the data root) instead of 10 synthetic classes. */
function configFor(w: number, size: number, bs: number, folder?: string): TrainingConfig {
  const steps = 3;
  const classes = 10;
  return resolveTrainingConfig({
    name: `mem-${w}x${size}x${bs}`,
    dataset: folder
      ? { type: 'imagefolder', path: path.basename(folder), valSplit: 0.01 }
      : { type: 'synthetic', classes, samplesPerClass: Math.ceil((bs * steps) / classes) + 1, valPerClass: 1 },
    model: { widthMultiplier: w, inputSize: size },
    training: { epochs: 1, batchSize: bs, maxSteps: steps, keepCheckpoints: 2 },
    // One float step, then QAT (the more expensive mode), as the default recipe runs.
    quantization: { delaySteps: 1 },
  });
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? await dirBytes(p) : (await stat(p)).size;
  }
  return total;
}

async function child(spec: string, folder?: string): Promise<void> {
  const [w, size, bs] = spec.split('x').map(Number) as [number, number, number];
  const dataRoot = folder ? path.dirname(folder) : undefined;
  const { tf } = await import('../src/ml/tf.js');
  const { runTraining } = await import('../src/ml/train.js');
  const { exportJobModel } = await import('../src/export/index.js');
  const heap = () => {
    const be = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array; asm?: { memory?: { buffer: ArrayBuffer } } } };
    return (be.wasm?.asm?.memory?.buffer ?? be.wasm?.HEAPU8?.buffer)?.byteLength ?? 0;
  };
  const dir = await mkdtemp(path.join(tmpdir(), 'qatserve-mem-'));
  try {
    const config = configFor(w, size, bs, folder);
    await runTraining({ config, workDir: dir, dataRoot: dataRoot ?? dir });
    const heapTrainBytes = heap();
    const ckDir = path.join(dir, 'checkpoints');
    const cks = (await readdir(ckDir)).sort();
    const checkpointBytes = await dirBytes(path.join(ckDir, cks[cks.length - 1]));
    const outDir = path.join(dir, 'model');
    await exportJobModel({ jobId: 'bench', config, checkpoint: ckDir, outDir, dataRoot: dataRoot ?? dir, verifyImages: 10 });
    const out: Sample = {
      w,
      size,
      bs,
      ok: true,
      heapTrainBytes,
      heapExportBytes: heap(),
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      checkpointBytes,
      modelDirBytes: await dirBytes(outDir),
    };
    process.stdout.write(`RESULT ${JSON.stringify(out)}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function runChild(spec: string, folder?: string): Promise<Sample> {
  const [w, size, bs] = spec.split('x').map(Number) as [number, number, number];
  return new Promise((resolve) => {
    const args = [...process.execArgv, fileURLToPath(import.meta.url), '--child', spec, ...(folder ? ['--folder', folder] : [])];
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code, signal) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (line) return resolve(JSON.parse(line.slice(7)) as Sample);
      const why = (
        err
          .trim()
          .split('\n')
          .filter((l) => l.trim() && !l.startsWith('Node.js'))
          .pop() ?? ''
      ).slice(0, 160);
      resolve({ w, size, bs, ok: false, error: `exit ${signal ?? code}: ${why}` });
    });
  });
}

/** Least squares for y = X b (normal equations, Gauss-Jordan elimination). */
function leastSquares(X: number[][], y: number[]): number[] {
  const k = X[0].length;
  const A = Array.from({ length: k }, (_, i) =>
    Array.from({ length: k + 1 }, (_, j) => (j < k ? X.reduce((s, r) => s + r[i] * r[j], 0) : X.reduce((s, r, n) => s + r[i] * y[n], 0))),
  );
  for (let i = 0; i < k; i++) {
    let p = i;
    for (let r = i + 1; r < k; r++) if (Math.abs(A[r][i]) > Math.abs(A[p][i])) p = r;
    [A[i], A[p]] = [A[p], A[i]];
    for (let r = 0; r < k; r++) {
      if (r === i) continue;
      const f = A[r][i] / A[i][i];
      for (let c = i; c <= k; c++) A[r][c] -= f * A[i][c];
    }
  }
  return A.map((row, i) => row[k] / row[i]);
}

const MiB = 2 ** 20;
const mib = (b: number | undefined) => (b === undefined ? '-' : (b / MiB).toFixed(0));

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { only: { type: 'string' }, child: { type: 'string' }, folder: { type: 'string' } } });
  const folder = values.folder ? path.resolve(values.folder) : undefined;
  if (values.child) return child(values.child, folder);
  // The classes the API would count in the folder (its class folders).
  const folderClasses = folder ? (await readdir(folder, { withFileTypes: true })).filter((e) => e.isDirectory()).length : undefined;
  if (folder) console.log(`# ${folder}: ${folderClasses} class folders`);
  const grid = values.only ? [values.only] : GRID.map((g) => g.join('x'));
  const samples: Sample[] = [];
  console.log('w     size  bs   acts/img   params  | heap train  heap export  max RSS  (MiB) | ckpt KiB  model KiB | estimate train / export MiB');
  for (const spec of grid) {
    const s = await runChild(spec, folder);
    samples.push(s);
    const cfg = configFor(s.w, s.size, s.bs, folder);
    const arch = archOf(cfg, folderClasses);
    const est = estimateJob(cfg, folderClasses);
    const head = `${String(s.w).padEnd(5)} ${String(s.size).padEnd(5)} ${String(s.bs).padEnd(4)} ${String(activationsPerImage(arch)).padStart(9)} ${String(parameterCount(arch)).padStart(8)}  |`;
    const estimate = `${mib(est.trainMemoryBytes).padStart(8)} / ${mib(est.exportMemoryBytes)}`;
    if (!s.ok) console.log(`${head} FAILED ${s.error} | estimate ${estimate}`);
    else {
      console.log(
        `${head} ${mib(s.heapTrainBytes).padStart(10)} ${mib(s.heapExportBytes).padStart(12)} ${mib(s.maxRssBytes).padStart(8)}        | ` +
          `${((s.checkpointBytes ?? 0) / 1024).toFixed(0).padStart(8)} ${((s.modelDirBytes ?? 0) / 1024).toFixed(0).padStart(10)} | ${estimate}`,
      );
    }
  }
  const ok = samples.filter((s) => s.ok);
  if (ok.length < 4) return;
  const rows = ok.map((s) => {
    const arch = archOf(configFor(s.w, s.size, s.bs, folder), folderClasses);
    return { s, acts: activationsPerImage(arch), params: parameterCount(arch) };
  });
  const [b0, b1, b2] = leastSquares(
    rows.map((r) => [1, r.acts * r.s.bs, r.params]),
    rows.map((r) => r.s.heapTrainBytes!),
  );
  console.log(`fit: training heap = ${(b0 / MiB).toFixed(1)} MiB + ${b1.toFixed(2)} B x batch x activations/image + ${b2.toFixed(2)} B x parameters`);
  const [c0, c1] = leastSquares(
    rows.map((r) => [1, r.params]),
    rows.map((r) => r.s.checkpointBytes!),
  );
  const [m0, m1] = leastSquares(
    rows.map((r) => [1, r.params]),
    rows.map((r) => r.s.modelDirBytes!),
  );
  console.log(
    `fit: checkpoint = ${(c0 / 1024).toFixed(0)} KiB + ${c1.toFixed(2)} B x parameters; model dir = ${(m0 / 1024).toFixed(0)} KiB + ${m1.toFixed(2)} B x parameters`,
  );
  let worst = 0;
  for (const r of rows) {
    const e = estimateJob(configFor(r.s.w, r.s.size, r.s.bs, folder), folderClasses);
    worst = Math.max(worst, Math.max(r.s.heapTrainBytes!, r.s.heapExportBytes!) / e.memoryBytes, r.s.checkpointBytes! / e.checkpointBytes);
  }
  console.log(`largest measured/estimated ratio (peak heap, checkpoint): ${worst.toFixed(3)} (<= 1: the estimate never falls short)`);
}

await main();
