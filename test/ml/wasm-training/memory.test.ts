// Training on wasm must not leak: no tensors, no backend buffers (our kernels allocate scratch and
// temporaries on the heap), and the wasm heap stops growing once the first steps have sized it.
import { expect, test } from 'vitest';
import { batchNormTrain, fakeQuantAct, fakeQuantWeight } from '../../../src/ml/backends/wasm-training/index.js';
import { tf, useBackend } from './helpers.js';
import { forwardLoss, initParams, makeBatch, mobilenetArch } from '../../../testkit/mobilenet-like.js';

test('20 QAT training steps on wasm: tensors, backend buffers and heap size stay flat', async () => {
  await useBackend('wasm');
  const backend = tf.backend() as unknown as { numDataIds(): number; wasm: { HEAPU8: Uint8Array } };
  const arch = mobilenetArch(0.35, 32, 10);
  const params = initParams(arch, 2);
  const { x, labels } = makeBatch(arch, 8, 4);
  const ops = { batchNormTrain, fakeQuantAct, fakeQuantWeight };
  const samples: { tensors: number; dataIds: number; heap: number; loss: number }[] = [];
  for (let step = 0; step < 20; step++) {
    const loss = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => forwardLoss(arch, params, x, labels, { fakeQuant: true, ops }));
      for (const v of params.values()) v.assign(tf.sub(v, tf.mul(grads[v.name], 0.05)));
      return value.dataSync()[0];
    });
    samples.push({ tensors: tf.memory().numTensors, dataIds: backend.numDataIds(), heap: backend.wasm.HEAPU8.length, loss });
  }
  const settled = samples.slice(4);
  for (const s of settled) {
    expect(s.tensors).toBe(settled[0].tensors);
    expect(s.dataIds).toBe(settled[0].dataIds);
    expect(s.heap).toBe(settled[0].heap);
  }
  // And it trains: the loss on this fixed batch goes down.
  expect(samples[19].loss).toBeLessThan(samples[0].loss);
  console.log(
    `heap ${(settled[0].heap / 2 ** 20).toFixed(0)} MiB, ${settled[0].tensors} tensors; loss ${samples[0].loss.toFixed(3)} -> ${samples[19].loss.toFixed(3)}`,
  );
  tf.dispose([x, labels, ...params.values()]);
});
