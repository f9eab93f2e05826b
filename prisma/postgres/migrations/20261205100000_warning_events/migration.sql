-- A job's warnings without reading all of its events: GET /v1/jobs/:id/warnings reads one job's
-- `warning` events, and a long job has millions of others. On SQLite, a job of 2M events with two
-- warnings: 245-276 ms scanning them, 0.0-0.2 ms through this index (a throwaway script,
-- thirty-fourth session); the worker's progress write (bench/progress-write.ts, SQLite) cost
-- 6.4-8.1 ms of CPU without it and 6.5-8.1 ms with it, alternated three times.

-- CreateIndex
CREATE INDEX "JobEvent_jobId_type_id_idx" ON "JobEvent"("jobId", "type", "id");
