// The one-at-a-time gate AVIF uploads decode through (src/serving/decode-gate.ts).
import { describe, expect, it } from 'vitest';
import { DecodeGate } from '../../src/serving/decode-gate.js';
import { OverloadedError } from '../../src/serving/errors.js';

function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('DecodeGate', () => {
  it('runs one decode at a time, in arrival order, refuses past the waiting places, and goes on after a failure', async () => {
    const gate = new DecodeGate('AVIF images', 2);
    const started: number[] = [];
    const ends = [deferred(), deferred(), deferred()];
    const runs = ends.map((end, i) =>
      gate.run(async () => {
        started.push(i);
        await end.promise;
        return i;
      }),
    );
    const refused = gate.run(async () => 'never');
    await expect(refused).rejects.toThrow(OverloadedError);
    await expect(refused).rejects.toThrow('3 AVIF images are being decoded or waiting already (one at a time); retry shortly, or send JPEG or PNG');
    await tick();
    expect(started).toEqual([0]);
    ends[0].reject(new Error('corrupt'));
    await expect(runs[0]).rejects.toThrow('corrupt');
    await tick();
    expect(started).toEqual([0, 1]);
    ends[1].resolve();
    expect(await runs[1]).toBe(1);
    await tick();
    expect(started).toEqual([0, 1, 2]);
    ends[2].resolve();
    expect(await runs[2]).toBe(2);
    // Idle again: the next decode starts at once.
    expect(await gate.run(async () => 'now')).toBe('now');
  });
});
