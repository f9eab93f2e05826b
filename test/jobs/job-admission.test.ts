// The admission estimates against the measurements they come from (bench/job-memory.ts, README
// "Security"): never below a measured peak, above the wasm32 limit for the configs that ran out of
// memory, and the fields named when a job is refused.
import { describe, expect, it } from 'vitest';
import { activationsPerImage, admissionIssues, archOf, budgetOnMachine, estimateJob, parameterCount } from '../../src/jobs/job-admission.js';
import { resolveTrainingConfig } from '../../src/config/training-config.js';

const MiB = 2 ** 20;
const cfg = (w: number, size: number, batchSize: number, training: object = {}) =>
  resolveTrainingConfig({ dataset: { type: 'synthetic', classes: 10 }, model: { widthMultiplier: w, inputSize: size }, training: { batchSize, ...training } });

// width, size, batch, wasm heap after training / after export (MiB), checkpoint KiB; null: out of memory.
const MEASURED: Array<[number, number, number, [number, number] | null, number | null]> = [
  [0.35, 32, 16, [207, 207], 3281],
  [0.35, 32, 64, [738, 738], 3281],
  [0.35, 32, 256, [2807, 2807], 3281],
  [1.0, 32, 32, [977, 977], 17639],
  [1.0, 32, 128, [3470, 3470], 17639],
  [0.35, 96, 32, [340, 340], 3281],
  [0.35, 96, 128, [1194, 1194], 3281],
  [0.5, 160, 32, [1040, 1040], 5576],
  [1.0, 128, 16, [619, 619], 17639],
  [1.0, 128, 48, [1764, 1764], 17639],
  [1.0, 224, 4, [887, 887], 17639],
  [1.0, 224, 8, [928, 928], 17639],
  [1.0, 224, 16, [1798, 1798], 17639],
  [1.0, 224, 31, [3538, 3538], 17639],
  // Training: bench/train.ts --check-heap 30 --threads 1 (steady from step 10); the 3-step run had 3541.
  [1.0, 224, 32, [3676, 3541], 17639],
  [1.0, 224, 33, [3787, 3648], 17639], // the same two ways, thirty-fourth session
  [1.0, 224, 40, null, null],
];
const budget = { memoryBytes: 4000 * MiB, diskBytes: 1024 * MiB };

describe('job admission', () => {
  it('counts activations and parameters from the architecture', () => {
    const arch = archOf(cfg(1.0, 224, 1));
    expect(parameterCount(arch)).toBe(2_270_794); // MobileNetV2 1.0 with a 10-class head (3.5 M with 1000)
    expect(activationsPerImage(arch)).toBe(6_828_650);
  });

  it.each(MEASURED)('never estimates below what %s@%s batch %s measured', (w, size, bs, heap, ckptKiB) => {
    const e = estimateJob(cfg(w, size, bs));
    if (heap === null) {
      expect(e.memoryBytes).toBeGreaterThan(4096 * MiB); // it ran out of the wasm32 heap
      expect(admissionIssues(cfg(w, size, bs), budget).length).toBeGreaterThan(0);
      return;
    }
    expect(e.memoryBytes).toBeGreaterThanOrEqual(Math.max(...heap) * MiB);
    expect(e.memoryBytes).toBeLessThan(Math.max(...heap) * MiB * 1.3); // and not wildly above
    expect(e.checkpointBytes).toBeGreaterThanOrEqual(ckptKiB! * 1024);
    expect(admissionIssues(cfg(w, size, bs), budget)).toEqual([]); // everything that ran is admitted
  });

  it("admits the seed's configuration with ImageNet's 1,000 classes, as measured", () => {
    // bench/job-memory.ts --only 1x224x32 --folder <1,000 class folders>: 3557 MiB of heap, 16 more
    // than with 10 classes (the head's 1.27 M parameters). Refused until the thirty-fourth session.
    const folder = resolveTrainingConfig({ dataset: { type: 'imagefolder', path: 'x' }, model: { widthMultiplier: 1.0, inputSize: 224 } });
    const e = estimateJob(folder, 1000);
    expect(e.memoryBytes).toBeGreaterThanOrEqual(3557 * MiB);
    expect(e.memoryBytes).toBeLessThan(3557 * MiB * 1.3);
    expect(admissionIssues(folder, budget, 1000)).toEqual([]);
  });

  it('names the fields that drive an estimate over budget, and what fits', () => {
    const mem = admissionIssues(cfg(1.0, 224, 1024), budget);
    expect(mem.map((i) => i.path)).toEqual(['training.batchSize', 'model.inputSize', 'model.widthMultiplier']);
    expect(mem[0].message).toContain('at most 33 fits');
    const disk = admissionIssues(cfg(1.0, 224, 8, { checkpointEverySteps: 1, keepCheckpoints: 100 }), budget);
    expect(disk.map((i) => i.path)).toEqual(['training.keepCheckpoints']);
    const fits = Number(/keep at most (\d+)/.exec(disk[0].message)![1]);
    expect(admissionIssues(cfg(1.0, 224, 8, { keepCheckpoints: fits }), budget)).toEqual([]);
    expect(admissionIssues(cfg(1.0, 224, 8, { keepCheckpoints: fits + 1 }), budget).map((i) => i.path)).toEqual(['training.keepCheckpoints']);
    // An image folder is sized by its class folders when the API could count them, else as 1,000.
    const folder = resolveTrainingConfig({ dataset: { type: 'imagefolder', path: 'x' }, model: { widthMultiplier: 1.0, inputSize: 224 } });
    expect(estimateJob(folder).parameters).toBeGreaterThan(3_400_000);
    expect(estimateJob(folder, 3).parameters).toBe(
      estimateJob({ ...folder, dataset: { type: 'synthetic', classes: 3, samplesPerClass: 1, valPerClass: 1, seed: 1 } }).parameters,
    );
    expect(estimateJob(folder, 5000).parameters).toBe(estimateJob(folder).parameters);
  });

  it("holds a worker's budget to what its machine's memory holds, saying so in the refusal", () => {
    expect(budgetOnMachine(budget, 24 * 1024 * MiB)).toEqual(budget);
    // A 1,200 MiB container: 1.0@224 at batch 32 was killed there by the kernel at every resume.
    const small = budgetOnMachine(budget, 1200 * MiB);
    expect(small.memoryBytes).toBeLessThan(700 * MiB);
    expect(small.diskBytes).toBe(budget.diskBytes);
    const issues = admissionIssues(cfg(1.0, 224, 32), small);
    expect(issues.map((i) => i.path)).toEqual(['model.inputSize', 'model.widthMultiplier']);
    expect(issues[0].message).toBe(
      "exporting width 1 at 224 px needs about 911 MiB; the worker's budget is 653 MiB (the 1200 MiB of memory this machine gives the worker hold a heap of 653 MiB beside the rest of the process)",
    );
    expect(admissionIssues(cfg(1.0, 96, 32), small)[0].message).toMatch(
      /^training width 1 at 96 px at batch 32 needs about \d+ MiB; the worker's budget is 653 MiB \(.*\): at most \d+ fits$/,
    );
    // The README demo (0.35@32, batch 32; 645 MiB of RSS measured) still runs there.
    expect(admissionIssues(cfg(0.35, 32, 32), small)).toEqual([]);
  });
});
