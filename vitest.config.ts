import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    // ink (the status dashboard) renders only a final frame when CI is set; the dashboard tests
    // check live frames, as a user at a terminal sees them.
    env: { CI: 'false', CONTINUOUS_INTEGRATION: 'false' },
    maxWorkers: 2,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          globalSetup: ['test/support/build-setup.ts'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'integration',
          // *.manual.ts are by-hand measurements (RESHARD_MANUAL=1 plus their own env knobs),
          // never part of `npm test`: timings are for `npm run bench`, not assertions.
          include: ['test/integration/**/*.test.ts', ...(process.env.RESHARD_MANUAL ? ['test/integration/**/*.manual.ts'] : [])],
          // Real mariadbd servers, started once for the run; each test uses fresh databases.
          globalSetup: ['test/support/build-setup.ts', 'test/support/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
