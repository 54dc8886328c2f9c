// native/load.cjs: how every backend package finds its addon (from-source build, else prebuild).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

interface Loader {
  loadAddon(dir: string, target: string): unknown;
  findAddon(dir: string, target: string): string | undefined;
  platformTag(): string;
}
const loader = createRequire(import.meta.url)('../../../native/load.cjs') as Loader;

const dirs: string[] = [];
function fakePackage(files: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'iomux-loader-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: '@iomux/native-fake' }));
  for (const file of files) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), '');
  }
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('native/load.cjs', () => {
  const tuple = `${process.platform}-${process.arch}`;

  it('names the package, the platform tag, what exists and what to do when nothing matches', () => {
    const dir = fakePackage(['prebuilds/sunos-sparc/iomux_fake.napi.node']);
    let caught: unknown;
    try {
      loader.loadAddon(dir, 'iomux_fake');
    } catch (err) {
      caught = err;
    }
    const { code, message } = caught as { code: string; message: string };
    expect(code).toBe('IOMUX_NO_BINARY');
    expect(message).toMatch(
      new RegExp(
        `^@iomux/native-fake: no iomux_fake\\.node for ${loader.platformTag()} .*prebuilt targets: sunos-sparc\\)\\..*npm rebuild @iomux/native-fake`,
      ),
    );
  });

  it.runIf(process.platform === 'linux')('picks the prebuild of this libc, by target name', () => {
    const libc = loader.platformTag().split('-')[2] ?? '';
    const other = libc === 'glibc' ? 'musl' : 'glibc';
    const dir = fakePackage([
      `prebuilds/${tuple}/iomux_fake.napi.${other}.node`,
      `prebuilds/${tuple}/iomux_fake.napi.${libc}.node`,
      `prebuilds/${tuple}/iomux_other.napi.${libc}.node`,
    ]);
    expect(loader.findAddon(dir, 'iomux_fake')).toBe(
      join(dir, 'prebuilds', tuple, `iomux_fake.napi.${libc}.node`),
    );
    expect(loader.findAddon(dir, 'iomux_missing')).toBeUndefined();
  });

  it('prefers a from-source build over a prebuild; accepts an untagged prebuild', () => {
    const dir = fakePackage([`prebuilds/${tuple}/iomux_fake.node`]);
    expect(loader.findAddon(dir, 'iomux_fake')).toBe(
      join(dir, 'prebuilds', tuple, 'iomux_fake.node'),
    );
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    writeFileSync(join(dir, 'build', 'Release', 'iomux_fake.node'), '');
    expect(loader.findAddon(dir, 'iomux_fake')).toBe(
      join(dir, 'build', 'Release', 'iomux_fake.node'),
    );
  });
});
