// Starts a worker thread from a module beside the caller: the compiled `<name>.js` when it exists
// (dist/), else `<name>.ts` through a bootstrap that registers tsx's loader in the thread first, so
// tests and `tsx` runs exercise the code they import. (Node 20 ignores `--import tsx` in a
// worker's execArgv.)
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/** `besideUrl`: import.meta.url of a module in the worker's folder; `name`: the worker's file name without extension. */
export function startThread(besideUrl: string, name: string, workerData: unknown): Worker {
  const js = new URL(`./${name}.js`, besideUrl);
  if (existsSync(fileURLToPath(js))) return new Worker(js, { workerData });
  // The ESM build of tsx's API (require.resolve would give the CJS build, which cannot load it).
  const tsxDir = path.dirname(createRequire(import.meta.url).resolve('tsx/package.json'));
  const tsx = pathToFileURL(path.join(tsxDir, 'dist/esm/api/index.mjs')).href;
  const ts = new URL(`./${name}.ts`, besideUrl).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); })`;
  return new Worker(boot, { eval: true, workerData });
}
