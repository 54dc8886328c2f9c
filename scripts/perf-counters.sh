#!/usr/bin/env bash
# Per-message counters (not timings) for the echo example under a pipelined load:
#   scripts/perf-counters.sh BACKEND [SIZE] [CONNECTIONS] [DEPTH] [SECONDS] [extra server env...]
# Starts examples/echo/server.mjs on BACKEND, drives it with bench/native/build/loadgen, and counts
# the server's page faults, instructions and syscalls (perf stat) over the measured window.
# Prints the counts divided by the messages echoed in that window. Needs `make -C bench/native`.
set -euo pipefail
backend=${1:?backend}
size=${2:-4096}
conns=${3:-1000}
depth=${4:-16}
secs=${5:-3}
shift $(($# < 5 ? $# : 5))
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
env IOMUX_BACKEND="$backend" PORT=0 LOG_LEVEL=warn "$@" node "$root/examples/echo/server.mjs" >"$out/server" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out/server" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*:\([0-9]*\) (backend.*/\1/p' "$out/server")
"$root/bench/native/build/loadgen" --port "$port" --connections "$conns" --size "$size" \
  --pipeline "$depth" --duration "$secs" --warmup 1 --json >"$out/load" &
load=$!
sleep 1
perf stat -x, -e page-faults,instructions,raw_syscalls:sys_enter -p "$server" -- sleep "$secs" 2>"$out/perf" || \
  perf stat -x, -e page-faults,instructions -p "$server" -- sleep "$secs" 2>"$out/perf"
wait $load || true
node -e '
const fs = require("fs");
const load = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const lines = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").filter((l) => /^\d/.test(l));
const msgs = load.messages;
const row = { backend: process.argv[3], size: +process.argv[4], messages: msgs };
for (const l of lines) { const f = l.split(","); row[f[2] + "_per_msg"] = +(Number(f[0]) / msgs).toFixed(3); }
console.log(JSON.stringify(row));
' "$out/load" "$out/perf" "$backend" "$size"
