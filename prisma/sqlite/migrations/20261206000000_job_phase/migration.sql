-- What a running job does between steps: an evaluation of 2,000 validation images at 224 px
-- takes 43-56 s on one thread, the export seconds to minutes, and the job's row said only
-- "step 10/20" meanwhile. JSON text of src/jobs/job-view.ts JobPhase; null while it trains.

-- AlterTable
ALTER TABLE "TrainingJob" ADD COLUMN "phase" TEXT;
