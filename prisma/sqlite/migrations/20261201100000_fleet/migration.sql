-- Many machines (issue 11): owner tokens and idempotency keys on jobs, artifact store keys instead
-- of local paths, the deployment id, and the tables of the `postgres` artifact store. Columns are
-- changed in place (SQLite's table rebuild would cascade-delete metric points inside the
-- migration's transaction).

-- AlterTable
ALTER TABLE "TrainingJob" ADD COLUMN "ownerToken" TEXT;
ALTER TABLE "TrainingJob" ADD COLUMN "idempotencyKey" TEXT;

-- CreateIndex
CREATE UNIQUE INDEX "TrainingJob_idempotencyKey_key" ON "TrainingJob"("idempotencyKey");

-- Paths become keys of the `fs` store, whose root is ARTIFACTS_DIR: "<ARTIFACTS_DIR>/jobs/<job>/..."
-- is the key "jobs/<job>/...", so files written before this migration stay where they are.
ALTER TABLE "Checkpoint" RENAME COLUMN "path" TO "key";
UPDATE "Checkpoint" SET "key" = 'jobs/' || "jobId" || substr("key", instr("key", '/jobs/' || "jobId" || '/') + length('/jobs/' || "jobId"))
WHERE instr("key", '/jobs/' || "jobId" || '/') > 0;

ALTER TABLE "Model" RENAME COLUMN "onnxPath" TO "onnxKey";
ALTER TABLE "Model" RENAME COLUMN "manifestPath" TO "manifestKey";
UPDATE "Model" SET "onnxKey" = 'models/' || "jobId" || '/model.onnx', "manifestKey" = 'models/' || "jobId" || '/manifest.json'
WHERE "onnxKey" LIKE '%/models/' || "jobId" || '/model.onnx';

-- CreateTable
CREATE TABLE "Deployment" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- CreateTable
CREATE TABLE "ArtifactBlob" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- CreateTable
CREATE TABLE "ArtifactChunk" (
    "blobId" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "data" BLOB NOT NULL,

    PRIMARY KEY ("blobId", "seq"),
    CONSTRAINT "ArtifactChunk_blobId_fkey" FOREIGN KEY ("blobId") REFERENCES "ArtifactBlob" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "ArtifactObject" (
    "key" TEXT NOT NULL PRIMARY KEY,
    "blobId" TEXT NOT NULL,
    "sizeBytes" INTEGER NOT NULL,
    "sha256" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "ArtifactObject_blobId_fkey" FOREIGN KEY ("blobId") REFERENCES "ArtifactBlob" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- CreateIndex
CREATE INDEX "ArtifactObject_blobId_idx" ON "ArtifactObject"("blobId");
