// The JS heap policy of a process that trains: let each thread's old generation grow to 3x what
// survived its last full collection (V8's --heap-growing-percent=200) instead of V8's adaptive
// ~2x. A training step leaves ~24 MB of live JS objects on each training thread (tfjs tensor
// records and the tape); with a 48 MB limit V8 began marking again at once whenever the loop went
// back to the event loop between steps, so a 224 px job ran ~1.4 full collections per step on
// rank 0 and ~0.8 on its peer. Measured (bench/job-rate.ts --only 1x224x8 --steps 31, --trace-gc):
// full collections over ~23 steps 31 -> 0 on rank 0 and 19 -> 0 on its peer; with --thread-cpu
// V8's helper threads 83-84 -> 35-36 ms of CPU per step, peak RSS 1381-1383 -> 1436-1439 MB.
// Tensor data lives in the wasm heap, which this does not touch.
import v8 from 'node:v8';

export const TRAINING_HEAP_GROWING_PERCENT = 200;

/**
 * Applies the policy to this process: every isolate (the training threads, the batch thread)
 * uses it from its next collection on. Call it before the training threads start.
 */
export function useTrainingHeapPolicy(): void {
  v8.setFlagsFromString(`--heap-growing-percent=${TRAINING_HEAP_GROWING_PERCENT}`);
}
