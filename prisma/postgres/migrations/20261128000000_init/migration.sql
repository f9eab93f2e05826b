-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateTable
CREATE TABLE "TrainingJob" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "config" TEXT NOT NULL,
    "epoch" INTEGER NOT NULL DEFAULT 0,
    "step" INTEGER NOT NULL DEFAULT 0,
    "totalSteps" INTEGER,
    "imagesPerSecond" DOUBLE PRECISION,
    "backend" TEXT,
    "errorCode" TEXT,
    "errorMessage" TEXT,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "warnings" INTEGER NOT NULL DEFAULT 0,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "startedAt" TIMESTAMP(3),
    "finishedAt" TIMESTAMP(3),
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "TrainingJob_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "MetricPoint" (
    "id" SERIAL NOT NULL,
    "jobId" TEXT NOT NULL,
    "step" INTEGER NOT NULL,
    "epoch" INTEGER NOT NULL,
    "loss" DOUBLE PRECISION,
    "learningRate" DOUBLE PRECISION,
    "imagesPerSecond" DOUBLE PRECISION,
    "top1" DOUBLE PRECISION,
    "top5" DOUBLE PRECISION,
    "floatTop1" DOUBLE PRECISION,

    CONSTRAINT "MetricPoint_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Checkpoint" (
    "id" SERIAL NOT NULL,
    "jobId" TEXT NOT NULL,
    "step" INTEGER NOT NULL,
    "epoch" INTEGER NOT NULL,
    "path" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Checkpoint_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Model" (
    "id" TEXT NOT NULL,
    "jobId" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "onnxPath" TEXT NOT NULL,
    "manifestPath" TEXT NOT NULL,
    "sizeBytes" INTEGER NOT NULL,
    "float32SizeBytes" INTEGER NOT NULL,
    "sha256" TEXT NOT NULL,
    "inputSize" INTEGER NOT NULL,
    "classes" TEXT NOT NULL,
    "floatTop1" DOUBLE PRECISION,
    "int8Top1" DOUBLE PRECISION,
    "agreement" DOUBLE PRECISION,
    "promotedAt" TIMESTAMP(3),

    CONSTRAINT "Model_pkey" PRIMARY KEY ("id")
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

-- AddForeignKey
ALTER TABLE "MetricPoint" ADD CONSTRAINT "MetricPoint_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "TrainingJob"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Checkpoint" ADD CONSTRAINT "Checkpoint_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "TrainingJob"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Model" ADD CONSTRAINT "Model_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "TrainingJob"("id") ON DELETE CASCADE ON UPDATE CASCADE;

