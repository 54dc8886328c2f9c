#!/usr/bin/env bash
# Native checks for CI: rebuild every addon with ASan + UBSan, run the conformance, UDP and runtime
# fallback suites against them (sanitizer reports abort the run), then rebuild the normal addons.
set -euo pipefail
cd "$(dirname "$0")/.."
asan="$(gcc -print-file-name=libasan.so)"
IOMUX_SANITIZE=1 pnpm -r --filter './packages/*' run rebuild
LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  npx vitest run packages/core/test/conformance.test.ts packages/core/test/udp.test.ts \
  packages/core/test/runtime-fallback.test.ts \
  --reporter=dot
pnpm -r --filter './packages/*' run rebuild
