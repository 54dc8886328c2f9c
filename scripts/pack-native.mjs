// prepack / postpack of every backend package: makes `pnpm pack` in packages/<name> give a
// self-contained tarball, and puts the repository back afterwards.
//   node ../../scripts/pack-native.mjs           (prepack, in the package directory)
//     - copies the shared native core and the loader (native/common.gypi, include/, src/,
//       load.cjs, install.cjs) into <package>/native/ (ignored by git);
//     - rewrites binding.gyp's ../../native/ paths to native/ (the original is kept in
//       binding.gyp.repo until postpack);
//     - rewrites package.json for the registry (original in package.json.repo): the only script
//       is `install: node native/install.cjs` (nothing to do where a prebuild matches, else a
//       node-gyp build with a clear message when no compiler is there), `files` gains native/
//       and prebuilds/, `iomuxPack.os` becomes `os`; pnpm reads the manifest after prepack;
//     - fails when a prebuild of a default target (scripts/prebuild-targets.mjs) is missing, so
//       no tarball silently needs a compiler; IOMUX_PACK_ALLOW_MISSING=1 packs anyway.
//   node ../../scripts/pack-native.mjs --restore (postpack): puts both files back, removes native/.
import { cpSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGETS, expectedPrebuilds } from './prebuild-targets.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const packageDir = process.cwd();
const manifest = join(packageDir, 'package.json');
const gyp = join(packageDir, 'binding.gyp');
const copy = join(packageDir, 'native');

function restore() {
  for (const file of [manifest, gyp]) {
    if (existsSync(`${file}.repo`)) renameSync(`${file}.repo`, file);
  }
  rmSync(copy, { recursive: true, force: true });
}

if (process.argv.includes('--restore')) {
  restore();
  process.exit(0);
}
if (existsSync(`${manifest}.repo`) || existsSync(`${gyp}.repo`)) {
  console.error(`${packageDir}: an earlier pack did not finish; run this script with --restore`);
  process.exit(1);
}

const pkg = JSON.parse(readFileSync(manifest, 'utf8'));
const missing = expectedPrebuilds(packageDir, pkg).filter((file) => !existsSync(file));
if (missing.length > 0 && process.env.IOMUX_PACK_ALLOW_MISSING !== '1') {
  console.error(`${pkg.name}: prebuilt binaries missing (build them: pnpm build:prebuilds):`);
  for (const file of missing) console.error(`  ${file}`);
  console.error(
    `default targets: ${TARGETS.filter((t) => t.default)
      .map((t) => t.tag)
      .join(', ')}`,
  );
  process.exit(1);
}

try {
  rmSync(copy, { recursive: true, force: true });
  for (const part of ['common.gypi', 'include', 'src', 'load.cjs', 'install.cjs']) {
    cpSync(join(root, 'native', part), join(copy, part), { recursive: true });
  }
  const gypText = readFileSync(gyp, 'utf8');
  renameSync(gyp, `${gyp}.repo`);
  writeFileSync(gyp, gypText.replaceAll('../../native/', 'native/'));

  renameSync(manifest, `${manifest}.repo`);
  const packed = { ...pkg, scripts: { install: 'node native/install.cjs' } };
  packed.files = [...new Set([...(pkg.files ?? []), 'native', 'prebuilds', 'binding.gyp'])];
  if (pkg.iomuxPack?.os !== undefined) packed.os = pkg.iomuxPack.os;
  delete packed.iomuxPack;
  delete packed.devDependencies;
  writeFileSync(manifest, `${JSON.stringify(packed, null, 2)}\n`);
} catch (err) {
  restore();
  throw err;
}
