import { defineConfig } from 'tsup';

export default defineConfig({
  entry: [
    'src/index.ts',
    'src/backend-api.ts',
    'src/prometheus.ts',
    'src/otel.ts',
    'src/cluster-worker.ts',
    'src/worker-scheduling.ts',
    'src/worker-exports.ts',
  ],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  shims: true,
  // Errors still print; the per-file size listing does not (`pnpm demo` shows the demo, not build logs).
  silent: true,
});
