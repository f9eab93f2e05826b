// The ML layer's public API.
export { runTraining, TrainingError } from './train.js';
export { loadTrainedModel, type TrainedModel } from './trained-model.js';
export { selectBackend, activeBackend, BackendError } from './backend.js';
export { loadCheckpoint, listCheckpoints, CheckpointError, type CheckpointManifest } from './checkpoint.js';
export { QuantExportError } from './to-quant-graph.js';
export type * from './train-api.js';
export type * from './quant-graph.js';
