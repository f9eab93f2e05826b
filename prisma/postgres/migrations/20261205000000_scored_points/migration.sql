-- A job's scored points (those an evaluation wrote top-1 onto) without reading all of its points:
-- GET /v1/jobs/:id/curve samples a long job's curve and keeps every scored point (on a job of
-- 1.875M points: 0.1 ms through this index, 1.4 s scanning them).

-- CreateIndex
CREATE INDEX "MetricPoint_jobId_top1_idx" ON "MetricPoint"("jobId", "top1");
