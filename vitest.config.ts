import { defineConfig } from 'vitest/config';

// Training tests are CPU-heavy and the machine has 2 cores: run files one at a time so timings and
// memory stay predictable, with generous timeouts (real training, real Redis/PostgreSQL).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
