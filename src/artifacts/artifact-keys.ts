// Where each artifact lives in the store. A key never depends on the machine that wrote it; a
// key that two workers could both write carries the writer's owner token, so a worker that lost
// its job can never overwrite what the job's new owner wrote.

/** Everything of one job (its checkpoints). */
export const jobPrefix = (jobId: string) => `jobs/${jobId}`;

/** One checkpoint: a prefix holding checkpoint.json and weights.bin. */
export const checkpointKey = (jobId: string, step: number, ownerToken: string) =>
  `${jobPrefix(jobId)}/checkpoints/step-${String(step).padStart(6, '0')}-${ownerToken.slice(0, 8)}`;

/** One exported model: model.onnx and manifest.json. */
export const modelPrefix = (modelId: string) => `models/${modelId}`;
