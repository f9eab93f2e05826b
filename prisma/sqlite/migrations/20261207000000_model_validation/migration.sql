-- A model's final evaluation in its row: the int8 file on the whole validation split (top-1, top-5
-- and how many images), so the model list can show the figure a user compares models by without
-- reading every manifest; and how many images the verification figures (int8Top1, floatTop1,
-- agreement) were measured on. Null for models exported before (their manifests still hold them).

-- AlterTable
ALTER TABLE "Model" ADD COLUMN "validationImages" INTEGER;
ALTER TABLE "Model" ADD COLUMN "validationTop1" REAL;
ALTER TABLE "Model" ADD COLUMN "validationTop5" REAL;
ALTER TABLE "Model" ADD COLUMN "verificationImages" INTEGER;
