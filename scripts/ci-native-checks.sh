#!/usr/bin/env bash
# Native checks for CI: rebuild every addon with ASan + UBSan, run the conformance, UDP and runtime
# fallback suites against them (sanitizer reports abort the run), run the engine-level UDP batch
# check on each Linux backend, then rebuild the normal addons.
set -euo pipefail
cd "$(dirname "$0")/.."
asan="$(gcc -print-file-name=libasan.so)"
IOMUX_SANITIZE=1 pnpm -r --filter './packages/*' run rebuild
LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  npx vitest run packages/core/test/conformance.test.ts packages/core/test/udp.test.ts \
  packages/core/test/runtime-fallback.test.ts \
  --reporter=dot

# Engine calls no JS API reaches yet (udp_send_batch): native/test/udp_batch_test.cc linked with
# each Linux backend's sources in turn, under ASan + UBSan.
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
flags=(-std=c++17 -Wall -Wextra -Werror -Wno-missing-field-initializers -O1 -g
  -fno-omit-frame-pointer -fsanitize=address,undefined -Inative/include -Inative/src -pthread)
common=(native/test/udp_batch_test.cc native/src/datagram.cc native/src/socket_util.cc
  native/src/write_queue.cc)
declare -A backend_sources=(
  [epoll]="native/src/readiness.cc packages/native-epoll/src/epoll.cc"
  [io_uring]="packages/native-iouring/src/uring.cc packages/native-iouring/src/iouring.cc"
  [select]="native/src/readiness.cc packages/fallback-select/src/select.cc packages/fallback-select/src/fallback_util.cc"
  [blocking_io]="packages/fallback-select/src/blocking_io.cc packages/fallback-select/src/fallback_util.cc"
)
for backend in epoll io_uring select blocking_io; do
  # shellcheck disable=SC2086 # the source lists are meant to split
  g++ "${flags[@]}" "${common[@]}" ${backend_sources[$backend]} -o "$out/$backend"
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$out/$backend"
done
pnpm -r --filter './packages/*' run rebuild
