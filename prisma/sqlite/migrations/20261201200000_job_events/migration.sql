-- Live job events (issue 14): a revision on jobs and metric points (the metrics cursor) and the
-- JobEvent table (the SSE stream's events, ids = SSE event ids).

-- AlterTable
ALTER TABLE "TrainingJob" ADD COLUMN "revision" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "MetricPoint" ADD COLUMN "revision" INTEGER NOT NULL DEFAULT 0;

-- Points written before this migration get distinct revisions above 0 (a cursor of 0 sees them
-- all), and their job's revision starts above them.
UPDATE "MetricPoint" SET "revision" = "step" + 1;
UPDATE "TrainingJob" SET "revision" = COALESCE((SELECT MAX("revision") FROM "MetricPoint" WHERE "MetricPoint"."jobId" = "TrainingJob"."id"), 0);

-- CreateTable
CREATE TABLE "JobEvent" (
    "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "jobId" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "payload" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "JobEvent_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "TrainingJob" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateIndex
CREATE INDEX "MetricPoint_jobId_revision_idx" ON "MetricPoint"("jobId", "revision");

-- CreateIndex
CREATE INDEX "JobEvent_jobId_id_idx" ON "JobEvent"("jobId", "id");
