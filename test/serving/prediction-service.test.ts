import { describe, expect, it } from 'vitest';
import { softmax, topK } from '../../src/serving/prediction-service.js';

describe('topK', () => {
  it('matches sorting every class, ties going to the lower index, for small and large k', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const labels = Array.from({ length: 1000 }, (_, i) => `c${i}`);
    for (const quantum of [0, 1 / 50]) {
      // With quantum > 0 the logits take few values, so many probabilities tie.
      const logits = Array.from({ length: 1000 }, () => (quantum ? Math.round(rand() / quantum) * quantum : rand()) * 8);
      const probs = softmax(logits);
      const order = Array.from({ length: 1000 }, (_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
      for (const k of [1, 5, 64, 65, 1000, 2000]) {
        expect(
          topK(probs, labels, k).map((p) => p.index),
          `k=${k}`,
        ).toEqual(order.slice(0, k));
      }
    }
    expect(topK(softmax([1, 2]), ['a', 'b'], 0)).toEqual([]);
    expect(topK(softmax([1, 3, 2]), ['a', 'b'], 2)).toEqual([
      { label: 'b', index: 1, probability: expect.closeTo(0.665, 3) },
      { label: '2', index: 2, probability: expect.closeTo(0.245, 3) },
    ]);
  });
});
