#!/usr/bin/env bash
# Native checks for CI: rebuild every addon with ASan + UBSan, run every native suite against them
# with leak detection on (sanitizer reports fail the run), run the engine-level UDP batch check on
# each Linux backend, then ThreadSanitizer over the threaded engines, then rebuild the normal addons
# (also when a check failed).
set -euo pipefail
cd "$(dirname "$0")/.."
asan="$(gcc -print-file-name=libasan.so)"
out="$(mktemp -d)"
restore() {
  rm -rf "$out"
  pnpm -r --filter './packages/*' run rebuild >/dev/null
}
trap restore EXIT
IOMUX_SANITIZE=1 pnpm -r --filter './packages/*' run rebuild >/dev/null

# Every suite that drives the addons; the hardening suites by glob, so new ones join as they land.
shopt -s nullglob
suites=(packages/core/test/conformance.test.ts packages/core/test/udp.test.ts
  packages/core/test/udp-send-thread.test.ts
  packages/core/test/runtime-fallback.test.ts packages/core/test/*-hardening.test.ts
  packages/core/test/late-poll-failure*.test.ts packages/core/test/connect-starvation*.test.ts
  packages/core/test/worker-exit*.test.ts packages/core/test/backend-failure*.test.ts
  packages/core/test/native-sizes*.test.ts packages/core/test/broadcast.test.ts
  packages/core/test/affinity.test.ts)
shopt -u nullglob
# detect_leaks=1: LeakSanitizer checks each process at exit; scripts/lsan-suppressions.txt lists
# (with reasons) the memory Node and V8 keep until exit. UBSan halts on its first report.
LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  LSAN_OPTIONS="suppressions=$PWD/scripts/lsan-suppressions.txt:print_suppressions=0" \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  npx vitest run "${suites[@]}" --reporter=dot

# Engine calls no JS API reaches (udp_send_batch, a full batch's SEND_ERRORs):
# native/test/udp_batch_test.cc linked with each Linux backend's sources in turn, under ASan,
# LeakSanitizer and UBSan. The sources are globs, so files split out of a backend still link:
# the shared core is native/src/*.cc but the N-API glue and the readiness engine (which only the
# readiness backends use); *_addon.cc files only include the glue.
flags=(-std=c++17 -Wall -Wextra -Werror -Wno-missing-field-initializers -O1 -g
  -fno-omit-frame-pointer -fsanitize=address,undefined -Inative/include -Inative/src -pthread)
mapfile -t shared < <(ls native/src/*.cc | grep -v -e '/addon\.cc$' -e '/readiness\.cc$')
fs=packages/fallback-select/src
mapfile -t fallback_shared < <(ls "$fs"/*.cc | grep -v -e '_addon\.cc$' -e '/select\.cc$' -e '/blocking_' || true)
mapfile -t blocking < <(ls "$fs"/blocking_*.cc | grep -v '_addon\.cc$')
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan-suppressions.txt:print_suppressions=0"
test_sources=(native/test/udp_batch_test.cc "${shared[@]}")
g++ "${flags[@]}" "${test_sources[@]}" native/src/readiness.cc packages/native-epoll/src/*.cc \
  -o "$out/epoll"
g++ "${flags[@]}" "${test_sources[@]}" packages/native-iouring/src/*.cc -o "$out/io_uring"
g++ "${flags[@]}" "${test_sources[@]}" native/src/readiness.cc "$fs/select.cc" \
  "${fallback_shared[@]}" -o "$out/select"
# blocking_io pins the shared object its code lives in (blocking_pin.cc: dladdr + dlopen with
# RTLD_NOLOAD), which a plain executable is not: its engine goes into a shared library here, as in
# the addon.
g++ "${flags[@]}" -fPIC -shared "${shared[@]}" "${blocking[@]}" "${fallback_shared[@]}" \
  -o "$out/libiomux_blocking_test.so"
g++ "${flags[@]}" native/test/udp_batch_test.cc -L"$out" -liomux_blocking_test \
  -Wl,-rpath,"$out" -o "$out/blocking_io"
for backend in epoll io_uring select blocking_io; do
  "$out/$backend"
done
# The UDP send thread (datagram_sender.cc) needs no engine: the shared core alone.
g++ "${flags[@]}" native/test/datagram_sender_test.cc "${shared[@]}" -o "$out/datagram_sender"
"$out/datagram_sender"

# ThreadSanitizer over the engines that run threads: native/test/stream_threads_test.cc (an
# engine-level TCP echo with pause/resume and half-closes) and udp_batch_test.cc, linked with
# select (its watcher thread) and blocking_io (accept, reader and writer threads, UDP readers),
# plus epoll as a single-threaded control; then the UDP send thread (datagram_sender_test.cc). io_uring is left out: it runs no thread of its own, and
# TSan cannot see the kernel's side of the shared rings (its memory fences do not build under it).
tsan_flags=(-std=c++17 -Wall -Wextra -Werror -Wno-missing-field-initializers -O1 -g
  -fno-omit-frame-pointer -fsanitize=thread -Inative/include -Inative/src -pthread)
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
for test in stream_threads_test udp_batch_test; do
  g++ "${tsan_flags[@]}" "native/test/$test.cc" "${shared[@]}" native/src/readiness.cc \
    packages/native-epoll/src/*.cc -o "$out/tsan-epoll"
  g++ "${tsan_flags[@]}" "native/test/$test.cc" "${shared[@]}" native/src/readiness.cc \
    "$fs/select.cc" "${fallback_shared[@]}" -o "$out/tsan-select"
  g++ "${tsan_flags[@]}" -fPIC -shared "${shared[@]}" "${blocking[@]}" "${fallback_shared[@]}" \
    -o "$out/libiomux_blocking_tsan.so"
  g++ "${tsan_flags[@]}" "native/test/$test.cc" -L"$out" -liomux_blocking_tsan \
    -Wl,-rpath,"$out" -o "$out/tsan-blocking_io"
  for backend in epoll select blocking_io; do
    "$out/tsan-$backend"
  done
done
g++ "${tsan_flags[@]}" native/test/datagram_sender_test.cc "${shared[@]}" \
  -o "$out/tsan-datagram_sender"
"$out/tsan-datagram_sender"
