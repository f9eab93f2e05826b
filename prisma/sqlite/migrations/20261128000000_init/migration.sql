-- CreateTable
CREATE TABLE "TrainingJob" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "config" TEXT NOT NULL,
    "epoch" INTEGER NOT NULL DEFAULT 0,
    "step" INTEGER NOT NULL DEFAULT 0,
    "totalSteps" INTEGER,
    "imagesPerSecond" REAL,
    "backend" TEXT,
    "errorCode" TEXT,
    "errorMessage" TEXT,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "warnings" INTEGER NOT NULL DEFAULT 0,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "startedAt" DATETIME,
    "finishedAt" DATETIME,
    "updatedAt" DATETIME NOT NULL
);

-- CreateTable
CREATE TABLE "MetricPoint" (
    "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "jobId" TEXT NOT NULL,
    "step" INTEGER NOT NULL,
    "epoch" INTEGER NOT NULL,
    "loss" REAL,
    "learningRate" REAL,
    "imagesPerSecond" REAL,
    "top1" REAL,
    "top5" REAL,
    "floatTop1" REAL,
    CONSTRAINT "MetricPoint_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "TrainingJob" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "Checkpoint" (
    "id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "jobId" TEXT NOT NULL,
    "step" INTEGER NOT NULL,
    "epoch" INTEGER NOT NULL,
    "path" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Checkpoint_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "TrainingJob" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "Model" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "jobId" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "onnxPath" TEXT NOT NULL,
    "manifestPath" TEXT NOT NULL,
    "sizeBytes" INTEGER NOT NULL,
    "float32SizeBytes" INTEGER NOT NULL,
    "sha256" TEXT NOT NULL,
    "inputSize" INTEGER NOT NULL,
    "classes" TEXT NOT NULL,
    "floatTop1" REAL,
    "int8Top1" REAL,
    "agreement" REAL,
    "promotedAt" DATETIME,
    CONSTRAINT "Model_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "TrainingJob" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateIndex
CREATE INDEX "TrainingJob_status_createdAt_idx" ON "TrainingJob"("status", "createdAt");

-- CreateIndex
CREATE INDEX "TrainingJob_createdAt_id_idx" ON "TrainingJob"("createdAt", "id");

-- CreateIndex
CREATE UNIQUE INDEX "MetricPoint_jobId_step_key" ON "MetricPoint"("jobId", "step");

-- CreateIndex
CREATE UNIQUE INDEX "Checkpoint_jobId_step_key" ON "Checkpoint"("jobId", "step");

-- CreateIndex
CREATE UNIQUE INDEX "Model_jobId_key" ON "Model"("jobId");

-- CreateIndex
CREATE INDEX "Model_promotedAt_idx" ON "Model"("promotedAt");

