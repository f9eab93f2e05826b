// The tfjs int8 graph runner (the quantized eval model and predict()) must compute exactly what
// ONNX Runtime's fused integer kernels compute: it is compared with the ORT-exact integer
// emulation of the export layer, logit for logit, on MobileNetV2-shaped graphs, on cpu and wasm.
import { describe, expect, it } from 'vitest';
import { tf } from '../../src/ml/tf.js';
import { selectBackend } from '../../src/ml/backend.js';
import { Int8GraphRunner } from '../../src/ml/int8-graph-runner.js';
import { buildSyntheticMobileNetV2, syntheticImages } from '../../testkit/synthetic-graph.js';
import { runIntegerReference } from '../../src/export/qdq-reference.js';

function nchwToNhwc(x: Float32Array, n: number, size: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++)
    for (let c = 0; c < 3; c++) for (let p = 0; p < size * size; p++) out[(b * size * size + p) * 3 + c] = x[(b * 3 + c) * size * size + p]!;
  return out;
}

describe.each(['cpu', 'wasm'] as const)('Int8GraphRunner on %s', (backend) => {
  it.each(
    [
      { width: 0.35, inputSize: 32, smallInputStem: true, seed: 7, n: 6 },
      { width: 0.5, inputSize: 64, smallInputStem: false, seed: 7, n: 6 },
      // 200 images of a graph where float32 multiply-then-add in the residual adds (instead of ORT's
      // fused multiply-adds) moved 7 images by up to 2 logit steps: rounding flips are rare.
      // (wasm only: the cpu backend takes a minute for it.)
      { width: 0.35, inputSize: 32, smallInputStem: true, seed: 2, n: 200 },
    ].filter((c) => backend === 'wasm' || c.n < 100),
  )('equals the ORT-exact integer reference on every logit (%o)', async (opts) => {
    await selectBackend({ prefer: backend });
    expect(tf.getBackend()).toBe(backend);
    const { seed, n, ...shape } = opts;
    const g = buildSyntheticMobileNetV2({ ...shape, numClasses: 10, seed });
    const nchw = syntheticImages(n, opts.inputSize, seed === 7 ? 11 : seed + 100);
    const expected = runIntegerReference(g, nchw, n);
    const runner = new Int8GraphRunner(g);
    const before = tf.memory().numTensors;
    const t = tf.tidy(() => runner.run(tf.tensor4d(nchwToNhwc(nchw, n, opts.inputSize), [n, opts.inputSize, opts.inputSize, 3])));
    const got = (await t.data()) as Float32Array;
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
    runner.dispose();
    const step = g.nodes.at(-1)!.outQuant.scale;
    let maxSteps = 0;
    for (let i = 0; i < got.length; i++) maxSteps = Math.max(maxSteps, Math.abs(got[i] - expected[i]) / step);
    expect(maxSteps).toBeLessThan(1e-3);
    // Not a degenerate graph: the logits vary across images and classes.
    expect(new Set(Array.from(got)).size).toBeGreaterThan(10);
  });
});
