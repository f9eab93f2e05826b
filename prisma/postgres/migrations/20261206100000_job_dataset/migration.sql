-- What the worker made of the job's data set: its classes, training and validation images and
-- where the validation split came from. Until now only the worker's log said it, and a folder read
-- wrongly (Kaggle's Training/ and Testing/ taken for two classes) showed only in the model.
-- JSON text of src/jobs/job-view.ts JobDataset; null until training starts.

-- AlterTable
ALTER TABLE "TrainingJob" ADD COLUMN "dataset" TEXT;
