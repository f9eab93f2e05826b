// The export layer's public API: exportJobModel (export-job.ts and its steps) and the ONNX writers.
export { exportJobModel, DEFAULT_VERIFY_IMAGES, type ExportJobOptions, type ExportJobResult } from './export-job.js';
export { ExportVerificationError } from './verify.js';
export { MODEL_FILE, MANIFEST_FILE, ModelManifest, parseManifest } from './manifest.js';
export { ModelEvaluation } from './evaluation.js';
export { EvaluationAccumulator, chanceWarning } from './export-job-evaluate.js';
export { quantGraphToQdqOnnx } from './onnx-qdq.js';
export { floatGraphToOnnx, quantGraphToFloatOnnx } from './onnx-float.js';
export { onnxFloatScorer, onnxInt8Scorer } from './onnx-scorer.js';
