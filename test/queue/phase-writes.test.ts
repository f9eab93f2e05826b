// A running job's phase reaches its row at once when the task changes (or the phase ends), and its
// per-batch image counts at most once per interval, the newest one; a failed write is tried again.
import { describe, expect, it } from 'vitest';
import { PhaseWrites } from '../../src/queue/phase-writes.js';
import type { Phase } from '../../src/ml/train-api.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const evaluating = (done: number, task = 'int8 top-1 on the validation split'): Phase => ({ name: 'evaluating', task, done, total: 2000 });

function harness(intervalMs: number, fail: () => boolean = () => false) {
  const written: (Phase | null)[] = [];
  const errors: unknown[] = [];
  let chain = Promise.resolve();
  const writes = new PhaseWrites({
    intervalMs,
    enqueue: (work) => {
      chain = chain.then(work).catch((err) => void errors.push(err));
    },
    write: async (phase) => {
      if (fail()) throw new Error('database unavailable');
      written.push(phase);
    },
  });
  return { writes, written, errors, settled: async () => (await sleep(20), chain) };
}

describe('PhaseWrites', () => {
  it('writes a new task at once and the counts reported within the interval as one write of the newest', async () => {
    const { writes, written, settled } = harness(300);
    writes.report(evaluating(0));
    await settled();
    expect(written).toEqual([evaluating(0)]);
    for (let done = 8; done <= 80; done += 8) writes.report(evaluating(done));
    await settled();
    expect(written).toHaveLength(1); // inside the interval
    await sleep(350);
    await settled();
    expect(written).toEqual([evaluating(0), evaluating(80)]);
  });

  it("writes the phase's end and the next task at once, ahead of a count's timer, and nothing once written", async () => {
    const { writes, written, settled } = harness(10_000);
    writes.report(evaluating(0));
    await settled();
    writes.report(evaluating(640)); // due in ~10 s
    writes.report(evaluating(0, 'float top-1 on the validation split'));
    await settled();
    writes.report(null);
    await settled();
    expect(written).toEqual([evaluating(0), evaluating(0, 'float top-1 on the validation split'), null]);
    writes.report(null); // the row holds it already
    await writes.flush();
    expect(written).toHaveLength(3);
  });

  it('tries a failed write again with the next report: the row ends with the newest phase', async () => {
    let down = true;
    const { writes, written, errors, settled } = harness(50, () => down);
    writes.report(evaluating(0));
    await settled();
    expect(errors).toHaveLength(1);
    down = false;
    writes.report(evaluating(16));
    await sleep(80);
    await settled();
    expect(written).toEqual([evaluating(16)]);
  });

  it('writes nothing after close', async () => {
    const { writes, written, settled } = harness(50);
    writes.report(evaluating(0));
    await settled();
    writes.report(evaluating(8));
    writes.close();
    await sleep(80);
    await settled();
    expect(written).toEqual([evaluating(0)]);
  });
});
