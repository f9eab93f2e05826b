// Export step 3: the accuracies the manifest reports for the verified model.
import { argmaxRows, top1Accuracy } from './verify.js';
import type { VerificationLogits } from './export-job-verify.js';

/** Top-1 of the float model and of the shipped int8 file on the verification images. */
export function verificationAccuracy(v: VerificationLogits, ortLogits: Float32Array): { floatTop1: number; int8Top1: number } {
  return {
    int8Top1: top1Accuracy(argmaxRows(ortLogits, v.n, v.k), v.labels),
    floatTop1: top1Accuracy(argmaxRows(v.floatLogits, v.n, v.k), v.labels),
  };
}
