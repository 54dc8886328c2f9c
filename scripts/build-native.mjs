// Builds the N-API addon of the package in the current directory with node-gyp.
//   node build-native.mjs          build when a source is newer than the addon (install, test);
//                                  a failed build only warns: the backend then reports itself
//                                  unavailable with the cause, and the other backends still work
//   node build-native.mjs --force  always rebuild; fail loudly
// Node's headers come from the running node's prefix (node-gyp cannot download them here).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const force = process.argv.includes('--force');
const packageDir = process.cwd();
const sharedNative = resolve(dirname(fileURLToPath(import.meta.url)), '../native');

function newestMtime(path) {
  const info = statSync(path);
  if (!info.isDirectory()) return info.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((entry) => newestMtime(join(path, entry))));
}

function builtAddon() {
  const dir = join(packageDir, 'build', 'Release');
  if (!existsSync(dir)) return undefined;
  const file = readdirSync(dir).find((name) => name.endsWith('.node'));
  return file === undefined ? undefined : join(dir, file);
}

const addon = builtAddon();
if (!force && addon !== undefined) {
  const sources = [join(packageDir, 'binding.gyp'), join(packageDir, 'src'), sharedNative];
  const newest = Math.max(...sources.filter((p) => existsSync(p)).map(newestMtime));
  if (newest <= statSync(addon).mtimeMs) process.exit(0);
}

const require = createRequire(join(packageDir, 'package.json'));
const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
const prefix = resolve(dirname(process.execPath), '..');
const args = [nodeGyp, 'rebuild', '--jobs', 'max'];
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const result = spawnSync(process.execPath, args, { cwd: packageDir, stdio: 'inherit' });
if (result.status !== 0) {
  console.error(`iomux: native build failed in ${packageDir}`);
  process.exit(force ? 1 : 0);
}
