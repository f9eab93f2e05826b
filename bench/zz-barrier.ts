import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { allocateCollectiveMemory, SharedCollective } from '../src/ml/data-parallel/shared-collective.js';
const N = 20000;
if (isMainThread) {
  const mem = allocateCollectiveMemory(2, 100, 10);
  const tsx = new URL('../node_modules/tsx/dist/esm/api/index.mjs', import.meta.url).href;
  const w = new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`, { eval: true, workerData: mem });
  await new Promise((r) => w.once('message', r));
  const c = new SharedCollective(mem, 0);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) c.minMax(i, i);
  console.log('us per exchange', ((performance.now() - t0) * 1000) / N);
  await w.terminate();
} else {
  const c = new SharedCollective(workerData, 1);
  parentPort!.postMessage('go');
  for (let i = 0; i < N; i++) c.minMax(i, i);
}
