-- When a running job's last step should be done, at the pace of its steps since it (re)started
-- (the evaluations between epochs averaged in): written with each batch of steps, so every client
-- can say how long a job has left (src/jobs/job-view.ts progress.trainingEndsAt). Null before a
-- run's first step.

-- AlterTable
ALTER TABLE "TrainingJob" ADD COLUMN "trainingEndsAt" TIMESTAMP(3);
