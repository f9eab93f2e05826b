// The stall timeout of a split step's barriers: a peer that never comes fails the step (the job
// then fails or resumes instead of hanging), and a pause of the whole process (SIGSTOP, a
// suspended VM) is not taken for a peer's stall once the process resumes.
import { describe, expect, it } from 'vitest';
import { allocateCollectiveMemory, DataParallelError, SharedCollective } from '../../../src/ml/data-parallel/shared-collective.js';

describe('a barrier’s stall timeout', () => {
  it('fails with TRAIN_PEER_STALLED when a peer does not come, and marks the group failed', () => {
    const mem = allocateCollectiveMemory(2, 4, 4);
    const rank0 = new SharedCollective(mem, 0, 300);
    const err = (() => {
      try {
        rank0.barrier();
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(DataParallelError);
    expect((err as DataParallelError).code).toBe('TRAIN_PEER_STALLED');
    expect(new SharedCollective(mem, 1).aborted).toBe(true);
  });

  it('does not count a pause of the process: the peer that arrives after it is met', () => {
    const mem = allocateCollectiveMemory(2, 4, 4);
    const rank1 = new SharedCollective(mem, 1);
    const start = performance.now();
    let paused = 0;
    let arrived = false;
    // The clock rank 0 reads: 20 minutes jump past it once it sleeps (the process was stopped
    // and resumed), and rank 1 reaches the barrier 300 ms later (arriving last, it does not block).
    const clock = () => {
      const real = performance.now() - start;
      if (real > 50) paused = 20 * 60_000;
      if (real > 350 && !arrived) {
        arrived = true;
        rank1.barrier();
      }
      return start + real + paused;
    };
    const rank0 = new SharedCollective(mem, 0, 5000, clock);
    expect(() => rank0.barrier()).not.toThrow();
    expect(rank0.aborted).toBe(false);
  });
});
