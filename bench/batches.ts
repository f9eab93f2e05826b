// CPU time of a job's training batches: what the batch thread spends per image while the step
// trains (with every core training, that time is taken from the step: issue 12). One line per
// case, milliseconds of this process's CPU time per image (V8's collector included), the lower the
// better.
//
//   npx tsx bench/batches.ts                      # synthetic at 224 px, batch 8, augmentation
//   npx tsx bench/batches.ts --size 32 --batch 32
//
// The batches are the job's own (loadDataset + Split.batch, as the batch thread calls them, into
// one recycled buffer): the first epoch renders every synthetic image before augmenting it, later
// epochs augment the cached images only. Run nothing else meanwhile.
import { parseArgs } from 'node:util';
import { loadDataset } from '../src/data/index.js';

const { values: opt } = parseArgs({
  options: {
    size: { type: 'string', default: '224' },
    batch: { type: 'string', default: '8' },
    /** Batches timed per line (after 40 untimed ones, past V8's tier-up). */
    steps: { type: 'string', default: '400' },
  },
});
const size = Number(opt.size);
const bs = Number(opt.batch);
const steps = Number(opt.steps);
const classes = 10;
const images = (40 + steps) * bs;
const ds = await loadDataset(
  { type: 'synthetic', classes, samplesPerClass: Math.ceil(images / classes), valPerClass: 1, seed: 1 },
  { dataRoot: '/nonexistent', inputSize: size },
);
const out = new Float32Array(bs * size * size * 3);

/** CPU ms per image over `count` batches of `epoch` from batch `first` on. */
async function timeBatches(epoch: number, first: number, count: number): Promise<number> {
  const t0 = process.cpuUsage();
  for (let s = first; s < first + count; s++) {
    const indices = Array.from({ length: bs }, (_, i) => (s * bs + i) % ds.train.length);
    await ds.train.batch(indices, { augment: true, seed: 1, epoch, step: s }, out);
  }
  const { user, system } = process.cpuUsage(t0);
  return (user + system) / 1000 / (count * bs);
}

await timeBatches(0, 0, 40); // untimed: V8's tier-up
const first = await timeBatches(0, 40, steps);
const cached = await timeBatches(1, 40, steps);
const workload = `synthetic size=${size} bs=${bs} augment`;
console.log(`batches ${workload} first epoch (render + augment): ${first.toFixed(3)} ms CPU per image`);
console.log(`batches ${workload} cached images (augment): ${cached.toFixed(3)} ms CPU per image`);
