// Issue 12's memory check, shared by bench/train.ts (the step alone) and bench/job-rate.ts (a
// job's trainer, batches and all): a snapshot once every kernel and range is set up (step 10) and
// one at the end. A grown tensor count or byte total is a leak; a grown wasm heap is memory the
// process never gets back (WebAssembly.Memory only grows). RSS is shown, not judged: V8's heaps
// and the allocator's free lists move it without a leak.
import { tf } from '../src/ml/tf.js';

export interface HeapSnapshot {
  /** Bytes of this thread's wasm backend memory (undefined on other backends). */
  heap: number | undefined;
  numTensors: number;
  numBytes: number;
  rss: number;
}

/** Bytes of the wasm backend's WebAssembly.Memory (undefined on other backends). */
function wasmHeapBytes(): number | undefined {
  const be = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array; asm?: { memory?: { buffer: ArrayBuffer } } } };
  return (be.wasm?.asm?.memory?.buffer ?? be.wasm?.HEAPU8?.buffer)?.byteLength;
}

export function heapSnapshot(): HeapSnapshot {
  const { numTensors, numBytes } = tf.memory();
  return { heap: wasmHeapBytes(), numTensors, numBytes, rss: process.memoryUsage().rss };
}

const mib = (b: number | undefined) => (b === undefined ? 'n/a' : `${(b / 2 ** 20).toFixed(1)} MiB`);

export function describeSnapshot(label: string, m: HeapSnapshot): string {
  return `  ${label.padEnd(10)} wasm heap ${mib(m.heap)}, tensors ${m.numTensors}, tensor bytes ${m.numBytes}, rss ${mib(m.rss)}`;
}

/** What grew from `before` to `after` that should not have; empty when nothing did. */
export function heapGrowth(before: HeapSnapshot, after: HeapSnapshot): string[] {
  const grew: string[] = [];
  if (after.numTensors > before.numTensors) grew.push(`tensors +${after.numTensors - before.numTensors}`);
  if (after.numBytes > before.numBytes) grew.push(`tensor bytes +${after.numBytes - before.numBytes}`);
  if ((after.heap ?? 0) > (before.heap ?? 0)) grew.push(`wasm heap +${mib(after.heap! - before.heap!)}`);
  return grew;
}

/** Prints the verdict and sets the exit code (1 on growth). */
export function reportHeapCheck(before: HeapSnapshot, after: HeapSnapshot, fromStep: number): void {
  const grew = heapGrowth(before, after);
  if (grew.length) {
    console.log(`check-heap FAILED: grew after step ${fromStep}: ${grew.join(', ')}`);
    process.exitCode = 1;
  } else {
    console.log(`check-heap OK: no growth after step ${fromStep}`);
  }
}
