// Memory of the evaluation paths at real resolutions: the int8 graph runner frees each activation
// once its last reader has run (peak a few activations wide, not the whole network), evaluation
// batches are sized by pixels, and a wasm abort becomes a WASM_ABORTED error naming its phase.
import { describe, expect, it } from 'vitest';
import { tf } from '../../src/ml/tf.js';
import { selectBackend } from '../../src/ml/backend.js';
import { Int8GraphRunner } from '../../src/ml/int8-graph-runner.js';
import { evalBatchSize } from '../../src/ml/evaluate.js';
import { inWasmPhase, isWasmAbort, WasmAbortedError } from '../../src/ml/wasm-abort.js';
import { buildSyntheticMobileNetV2 } from '../../testkit/synthetic-graph.js';
import type { QuantGraph } from '../../src/ml/quant-graph.js';

/** Bytes of every activation the graph produces for n images (what one outer tidy would hold). */
function activationBytes(g: QuantGraph, n: number, size: number): { all: number; largest: number } {
  const shape = new Map<string, [number, number, number]>([[g.input.name, [size, size, 3]]]);
  let total = 0;
  let largest = 0;
  for (const node of g.nodes) {
    let s: [number, number, number];
    if (node.op === 'conv') {
      const [h, w] = shape.get(node.input)!;
      const [pt, pl, pb, pr] = node.pads;
      s = [
        Math.floor((h + pt + pb - node.kernel[0]) / node.strides[0]) + 1,
        Math.floor((w + pl + pr - node.kernel[1]) / node.strides[1]) + 1,
        node.outChannels,
      ];
    } else if (node.op === 'add') s = shape.get(node.inputs[0])!;
    else if (node.op === 'globalAvgPool') s = [1, 1, shape.get(node.input)![2]];
    else s = [1, 1, node.outFeatures];
    shape.set(node.output, s);
    total += n * s[0] * s[1] * s[2] * 4;
    largest = Math.max(largest, n * s[0] * s[1] * s[2] * 4);
  }
  return { all: total, largest };
}

describe('evaluation memory', () => {
  it('Int8GraphRunner peaks at a small share of the activations it computes, and leaks nothing', async () => {
    await selectBackend({ prefer: 'wasm' });
    const size = 96;
    const n = 2;
    const g = buildSyntheticMobileNetV2({ width: 1.0, inputSize: size, numClasses: 5, seed: 3 });
    const runner = new Int8GraphRunner(g);
    const x = tf.randomUniform<tf.Rank.R4>([n, size, size, 3], -2, 2);
    const before = tf.memory().numTensors;
    const bytesBefore = tf.memory().numBytes;
    let out: tf.Tensor2D | undefined;
    const profile = await tf.profile(() => {
      out = runner.run(x);
      return out;
    });
    expect(out!.shape).toEqual([n, 5]);
    out!.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const { all, largest } = activationBytes(g, n, size);
    // Each layer's result passes through ~7 temporaries (conv, add, mul, round, add, clip, sub): one
    // outer tidy would hold about 7 x `all` at the end. Layer by layer the peak is one layer's
    // temporaries plus the activations still waiting for a reader (residual inputs).
    // (tf.profile's peak counts every live tensor: the runner's weights and `x` are subtracted.)
    const peak = profile.peakBytes - bytesBefore;
    expect(peak).toBeLessThan(9 * largest);
    expect(peak).toBeLessThan(2 * all);
    x.dispose();
    runner.dispose();
  });

  it('sizes evaluation batches by pixels: 8 images at 224 px, bounded at 32 px', () => {
    expect(evalBatchSize(224)).toBe(8);
    expect(evalBatchSize(112)).toBe(32);
    expect(evalBatchSize(32)).toBe(64);
    expect(evalBatchSize(1000)).toBe(1);
  });

  it('turns a wasm abort into WASM_ABORTED naming the phase and sizes; other errors pass through', async () => {
    const sizes = { widthMultiplier: 1, inputSize: 224, batchSize: 8, valImages: 2000 };
    const abort = new Error('Aborted(). Build with -sASSERTIONS for more info.');
    expect(isWasmAbort(abort)).toBe(true);
    expect(isWasmAbort(new Error('shape mismatch'))).toBe(false);
    const err = await inWasmPhase(
      'verify',
      () => sizes,
      async () => {
        throw abort;
      },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WasmAbortedError);
    expect((err as WasmAbortedError).code).toBe('WASM_ABORTED');
    expect((err as Error).message).toMatch(/during verify \(width 1, input 224 px, batch 8, 2000 validation images\): Aborted\(\)/);
    const plain = new RangeError('bad input');
    await expect(
      inWasmPhase(
        'train',
        () => sizes,
        async () => {
          throw plain;
        },
      ),
    ).rejects.toBe(plain);
  });
});
