// A running job's steps reach the database in batches, at most one write per interval, every
// point in order, and none after the runner's last flush.
import { describe, expect, it } from 'vitest';
import { MAX_STEPS_PER_WRITE, StepWrites } from '../../src/queue/step-writes.js';
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

  it('keeps the steps of a failed write for the next one: none lost, in order', async () => {
    // The database restarting under a running job (by hand: PostgreSQL restarted at step 505).
    const written: number[][] = [];
    let down = true;
    const writes = new StepWrites({
      intervalMs: 10_000,
      enqueue: () => {},
      write: async (steps) => {
        if (down) throw new Error('the database system is shutting down');
        written.push(steps.map((s) => s.step));
      },
    });
    writes.add(rec(1));
    writes.add(rec(2));
    await expect(writes.flush()).rejects.toThrow(/shutting down/);
    writes.add(rec(3));
    down = false;
    await writes.flush();
    expect(written).toEqual([[1, 2, 3]]);
  });

  it(`writes at most ${MAX_STEPS_PER_WRITE} steps at once; gives steps up after failing for retryForMs`, async () => {
    const written: number[][] = [];
    const dropped: number[][] = [];
    let fail = false;
    const writes = new StepWrites({
      intervalMs: 10_000,
      retryForMs: 50,
      enqueue: () => {},
      write: async (steps) => {
        if (fail) throw new Error('never');
        written.push([steps[0].step, steps.length]);
      },
      onDropped: (steps) => dropped.push([steps[0].step, steps.length]),
    });
    // A backlog of 1,200 steps (writes held up): SQLite takes at most 999 values in a query.
    for (let s = 1; s <= 1200; s++) writes.add(rec(s));
    await writes.flush();
    expect(written).toEqual([
      [1, 500],
      [501, 500],
      [1001, 200],
    ]);
    // A write that can never succeed: kept while it fails for less than retryForMs, then given up.
    fail = true;
    writes.add(rec(1201));
    await expect(writes.flush()).rejects.toThrow();
    expect(dropped).toEqual([]);
    await sleep(60);
    writes.add(rec(1202));
    await expect(writes.flush()).rejects.toThrow();
    expect(dropped).toEqual([[1201, 2]]);
    fail = false;
    writes.add(rec(1203));
    await writes.flush();
    expect(written.at(-1)).toEqual([1203, 1]);
  });
});
