import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'packages/*/test/**/*.test.ts',
      'examples/*/test/**/*.test.ts',
      'bench/test/**/*.test.ts',
    ],
    // Fails any test that leaves an fd, handle or timer open (see the file for the rules).
    setupFiles: ['packages/core/test/setup/leak-check.ts'],
    // The kqueue backend runs here as its test-only build over the kqueue emulation on Linux
    // (packages/native-kqueue/emulation), through the same suites as every other backend.
    env: { IOMUX_KQUEUE_EMULATION: '1' },
    // 'stack': after-hooks run in reverse order, so the leak check's afterEach (registered first,
    // by the setup file) runs after each test file's own cleanup hooks.
    sequence: { hooks: 'stack' },
    testTimeout: 60_000,
    hookTimeout: 30_000,
    pool: 'forks',
    reporters: process.env.CI
      ? ['default', ['json', { outputFile: process.env.VITEST_REPORT ?? '.vitest-report.json' }]]
      : ['default'],
  },
});
