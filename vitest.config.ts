import { defineConfig } from 'vitest/config';

// The machine has 2 cores; most files keep one about 1.2x busy, so two run at a time. Files whose
// assertions hold only on a quiet machine run one at a time, after the rest: timings and deadlines
// (event-loop lag, wake-ups, request and lock timeouts, JOB_TIMEOUT_MS), two workers racing for a
// job, a step split over threads, and chromium.
const serial = [
  'test/api/idle-wakeups.test.ts',
  'test/api/load-shedding.test.ts',
  'test/api/redos.test.ts',
  'test/api/redact.test.ts',
  'test/api/limits.test.ts',
  'test/api/auth.test.ts',
  'test/queue/step-writes.test.ts',
  'test/queue/worker-supervisor.test.ts',
  'test/serving/predictor-pool.test.ts',
  'test/data/batch-thread.test.ts',
  'test/integration/lock-renewal.test.ts',
  'test/integration/worker-race.test.ts',
  'test/integration/job-lifecycle.test.ts',
  'test/integration/deployments.test.ts',
  'test/integration/api-shutdown.test.ts',
  'test/web/dashboard*.test.ts',
  'test/ml/data-parallel/data-parallel-step.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: { name: 'parallel', include: ['test/**/*.test.ts'], exclude: serial, maxWorkers: 2, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'serial', include: serial, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
