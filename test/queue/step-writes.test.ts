// A running job's steps reach the database in batches, at most one write per interval, every
// point in order, and none after the runner's last flush.
import { describe, expect, it } from 'vitest';
import { StepWrites } from '../../src/queue/step-writes.js';
import type { StepRecord } from '../../src/jobs/job-lifecycle.js';

const rec = (step: number): StepRecord => ({ step, epoch: 1, loss: 1, learningRate: 0.1, imagesPerSecond: 10 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function harness(intervalMs: number) {
  const written: number[][] = [];
  let chain = Promise.resolve();
  const writes = new StepWrites({
    intervalMs,
    enqueue: (work) => {
      chain = chain.then(work);
    },
    write: async (steps) => {
      written.push(steps.map((s) => s.step));
    },
  });
  return { writes, written, settled: () => chain };
}

describe('StepWrites', () => {
  it('writes the first step at once, then what arrives within the interval as one write', async () => {
    const { writes, written, settled } = harness(1000);
    writes.add(rec(1));
    await sleep(20);
    await settled();
    expect(written).toEqual([[1]]);
    for (let s = 2; s <= 5; s++) writes.add(rec(s));
    await sleep(50);
    await settled();
    expect(written).toEqual([[1]]); // still inside the interval
    await sleep(1000);
    await settled();
    expect(written).toEqual([[1], [2, 3, 4, 5]]);
  });

  it('a flush writes what is pending at once, ahead of the timer; an empty flush writes nothing', async () => {
    const { writes, written, settled } = harness(10_000);
    writes.add(rec(1));
    await sleep(20);
    await settled();
    writes.add(rec(2));
    writes.add(rec(3));
    await writes.flush();
    expect(written).toEqual([[1], [2, 3]]);
    await writes.flush(); // nothing pending: no empty write
    writes.add(rec(4)); // due in ~10 s
    await writes.flush();
    await sleep(20);
    await settled();
    expect(written).toEqual([[1], [2, 3], [4]]);
  });
});
