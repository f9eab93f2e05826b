// The export layer's public API: exportJobModel (export-job.ts and its steps) and the ONNX writers.
export { exportJobModel, spreadIndices, type ExportJobOptions, type ExportJobResult } from './export-job.js';
export { MODEL_FILE, MANIFEST_FILE } from './export-job-write.js';
export { ExportVerificationError } from './verify.js';
export type { ModelManifest, ModelEvaluation } from './manifest.js';
export { EvaluationAccumulator, chanceWarning } from './export-job-evaluate.js';
export { quantGraphToQdqOnnx, quantGraphToFloatOnnx } from './onnx-qdq.js';
