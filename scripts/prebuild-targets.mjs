// The prebuilt targets of the backend packages: one line each. `default` targets are built by
// `pnpm build:prebuilds` and must be in every tarball of a package that runs there (pack-native.mjs
// refuses to pack without them); the others build on request (`pnpm build:prebuilds darwin-arm64`).
// Binaries go to packages/<name>/prebuilds/<platform>-<arch>/<target>.napi[.<libc>].node
// (prebuildify's layout, read by native/load.cjs).
//   toolchain 'gcc':   a GNU C++ compiler (`cxx`), libstdc++ and libgcc linked statically;
//   toolchain 'zig':   zig 0.11 from npm for `triple` (links its own libc++ statically);
//   toolchain 'mingw': scripts/build-win32.mjs (mingw-w64, from scripts/iocp-toolchain.sh).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readGyp } from './lib/gyp.mjs';

export const TARGETS = [
  {
    tag: 'linux-x64-glibc',
    os: 'linux',
    arch: 'x64',
    libc: 'glibc',
    default: true,
    toolchain: 'gcc',
    cxx: 'g++',
  },
  {
    tag: 'linux-arm64-glibc',
    os: 'linux',
    arch: 'arm64',
    libc: 'glibc',
    default: true,
    toolchain: 'gcc',
    cxx: 'aarch64-linux-gnu-g++',
  },
  {
    tag: 'linux-x64-musl',
    os: 'linux',
    arch: 'x64',
    libc: 'musl',
    // Not default: zig 0.11's C++ build of the shared core did not finish in 1000 s on this
    // shared 2-core machine, and nothing here can run a musl Node to serve traffic with it.
    default: false,
    toolchain: 'zig',
    triple: 'x86_64-linux-musl',
  },
  {
    tag: 'darwin-x64',
    os: 'darwin',
    arch: 'x64',
    default: false,
    toolchain: 'zig',
    triple: 'x86_64-macos',
  },
  {
    tag: 'darwin-arm64',
    os: 'darwin',
    arch: 'arm64',
    default: false,
    toolchain: 'zig',
    triple: 'aarch64-macos',
  },
  { tag: 'win32-x64', os: 'win32', arch: 'x64', default: false, toolchain: 'mingw' },
];

/** gyp's name for a Node platform (binding.gyp conditions test OS=='mac' etc.). */
export const GYP_OS = { linux: 'linux', darwin: 'mac', freebsd: 'freebsd', win32: 'win' };

/** Node platforms a package runs on: `iomuxPack.os` (packed as `os`), `os`, else all. */
export function platformsOf(pkg) {
  return pkg.iomuxPack?.os ?? pkg.os ?? Object.keys(GYP_OS);
}

/** File name of a target's prebuild for addon `name`. */
export function prebuildFile(packageDir, target, name) {
  const tags = ['napi', ...(target.libc === undefined ? [] : [target.libc])];
  if (target.toolchain === 'mingw') tags.length = 0; // build-win32.mjs writes <name>.node
  return join(
    packageDir,
    'prebuilds',
    `${target.os}-${target.arch}`,
    [name, ...tags, 'node'].join('.'),
  );
}

/** Loadable target names of a package's binding.gyp (static libraries left out). */
export function addonNames(packageDir) {
  const file = join(packageDir, 'binding.gyp');
  if (!existsSync(file)) return [];
  return readGyp(file)
    .targets.filter((t) => t.type !== 'static_library')
    .map((t) => t.target_name);
}

/** Prebuilds the default targets must have put into a package (absolute paths). */
export function expectedPrebuilds(packageDir, pkg) {
  const platforms = platformsOf(pkg);
  return TARGETS.filter((t) => t.default && platforms.includes(t.os)).flatMap((t) =>
    addonNames(packageDir).map((name) => prebuildFile(packageDir, t, name)),
  );
}
