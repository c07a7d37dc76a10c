import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // Real servers (Dovecot, s3rver, dynalite, HTTP) start per file; keep files parallel but bounded
    // to the 2 cores CI has.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    setupFiles: ['test/setup.ts'],
    // CI also writes a JSON report so .ci/run can print a plain "N passed, N failed" closing line.
    reporters:
      process.env.CI === 'true' ? ['default', ['json', { outputFile: '.vitest-report.json' }]] : ['default'],
  },
});
