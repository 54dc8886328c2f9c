// Builds the N-API addon of the package in the current directory with node-gyp.
//   node build-native.mjs          build when a source is newer than the addon (install, test);
//                                  a failed build only warns: the backend then reports itself
//                                  unavailable with the cause, and the other backends still work
//   node build-native.mjs --force  always rebuild; fail loudly
// Output: one line per addon on success (built or up to date); node-gyp's full log only when the
// build fails, or always with IOMUX_BUILD_VERBOSE=1.
// Node's headers come from the running node's prefix (node-gyp cannot download them here).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
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

function builtAddons() {
  const dir = join(packageDir, 'build', 'Release');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith('.node'))
    .map((name) => join('build', 'Release', name));
}

const name = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')).name;
const addons = builtAddons();
if (!force && addons.length > 0) {
  const sources = [join(packageDir, 'binding.gyp'), join(packageDir, 'src'), sharedNative];
  const newest = Math.max(...sources.filter((p) => existsSync(p)).map(newestMtime));
  const oldest = Math.min(...addons.map((a) => statSync(join(packageDir, a)).mtimeMs));
  if (newest <= oldest) {
    console.log(`${name}: up to date (${addons.join(', ')})`);
    process.exit(0);
  }
}

const require = createRequire(join(packageDir, 'package.json'));
const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
const prefix = resolve(dirname(process.execPath), '..');
const args = [nodeGyp, 'rebuild', '--jobs', 'max'];
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const verbose = process.env.IOMUX_BUILD_VERBOSE === '1';
const started = performance.now();
const result = spawnSync(process.execPath, args, {
  cwd: packageDir,
  stdio: verbose ? 'inherit' : ['ignore', 'pipe', 'pipe'],
  maxBuffer: 256 * 1024 * 1024,
});
if (result.status !== 0) {
  if (!verbose) {
    process.stdout.write(result.stdout ?? '');
    process.stderr.write(result.stderr ?? '');
  }
  const why =
    result.error?.message ??
    (result.signal ? `signal ${result.signal}` : `exit status ${String(result.status)}`);
  console.error(`iomux: native build failed in ${packageDir} (${why}); the full log is above`);
  process.exit(force ? 1 : 0);
}
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`${name}: built in ${seconds} s (${builtAddons().join(', ')})`);
