-- API keys (hashed; scopes on the row) and which key created each job (per-key job cap, serving authority).

-- AlterTable
ALTER TABLE "TrainingJob" ADD COLUMN "createdByKeyId" TEXT;
ALTER TABLE "TrainingJob" ADD COLUMN "autoServe" BOOLEAN NOT NULL DEFAULT true;

-- CreateTable
CREATE TABLE "ApiKey" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "keyHash" TEXT NOT NULL,
    "scopes" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastUsedAt" TIMESTAMP(3),
    "revokedAt" TIMESTAMP(3),

    CONSTRAINT "ApiKey_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "TrainingJob_createdByKeyId_status_idx" ON "TrainingJob"("createdByKeyId", "status");

CREATE UNIQUE INDEX "ApiKey_name_key" ON "ApiKey"("name");

CREATE INDEX "ApiKey_prefix_idx" ON "ApiKey"("prefix");

