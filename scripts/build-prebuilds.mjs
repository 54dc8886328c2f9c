// pnpm build:prebuilds [tag ...] — builds the prebuilt N-API binaries of every backend package for the
// targets of scripts/prebuild-targets.mjs (default: the `default` ones), with cross compilers
// driven directly (no node-gyp): sources and includes from each binding.gyp, defines and warning
// flags from native/common.gypi. The shared core is compiled once per target and linked into
// each addon; objects are reused while newer than their inputs. After each link the ELF / Mach-O
// header is checked for the target CPU and, on glibc, the newest GLIBC_ symbol version the binary
// needs is printed (the minimum glibc). Undefined napi_* / uv_* symbols stay for Node to provide.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  statSync,
} from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonsOf, readGyp } from './lib/gyp.mjs';
import { runIn } from './lib/run.mjs';
import { zigBinary } from './lib/zig.mjs';
import { GYP_OS, TARGETS, platformsOf, prebuildFile } from './prebuild-targets.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const objRoot = join(root, 'node_modules', '.cache', 'iomux-prebuilds');
const packagesDir = join(root, 'packages');

const requested = process.argv.slice(2);
const unknown = requested.filter((tag) => !TARGETS.some((t) => t.tag === tag));
if (unknown.length > 0) {
  console.error(
    `unknown target ${unknown.join(', ')}; known: ${TARGETS.map((t) => t.tag).join(', ')}`,
  );
  process.exit(2);
}
const targets =
  requested.length > 0
    ? TARGETS.filter((t) => requested.includes(t.tag))
    : TARGETS.filter((t) => t.default);

const run = (command, args) => runIn(command, args, root);

async function pool(jobs, limit) {
  const results = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, jobs.length) }, async () => {
      while (next < jobs.length) {
        const index = next++;
        results[index] = await jobs[index]();
      }
    }),
  );
  return results;
}

function newestMtime(path) {
  const info = statSync(path);
  if (!info.isDirectory()) return info.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((entry) => newestMtime(join(path, entry))));
}

function packagesFor(target) {
  return readdirSync(packagesDir)
    .map((name) => join(packagesDir, name))
    .filter((dir) => existsSync(join(dir, 'binding.gyp')))
    .filter((dir) =>
      platformsOf(JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))).includes(target.os),
    );
}

/** CPU named by an ELF (e_machine) or Mach-O header. */
function binaryCpu(path) {
  const fd = openSync(path, 'r');
  const header = Buffer.alloc(20);
  readSync(fd, header, 0, 20, 0);
  closeSync(fd);
  if (header.readUInt32BE(0) === 0x7f454c46) {
    return (
      { 62: 'x64', 183: 'arm64' }[header.readUInt16LE(18)] ??
      `elf machine ${header.readUInt16LE(18)}`
    );
  }
  if (header.readUInt32LE(0) === 0xfeedfacf) {
    return { 0x01000007: 'x64', 0x0100000c: 'arm64' }[header.readUInt32LE(4)] ?? 'mach-o';
  }
  return 'unknown';
}

/** Newest GLIBC_x.y version among the binary's dynamic symbols (readelf works for any CPU). */
function newestGlibc(path) {
  const out =
    spawnSync('readelf', ['--dyn-syms', '--wide', path], { encoding: 'utf8' }).stdout ?? '';
  const versions = [...out.matchAll(/@GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [
    +m[1],
    +m[2],
    +(m[3] ?? 0),
  ]);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  return versions.length === 0
    ? 'none'
    : versions
        .at(-1)
        .filter((v, i) => i < 2 || v > 0)
        .join('.');
}

const common = readGyp(join(root, 'native', 'common.gypi')).target_defaults;
const nodeInclude = join(dirname(process.execPath), '..', 'include', 'node');
const addonApi = dirname(
  spawnSync(process.execPath, ['-p', "require.resolve('node-addon-api/package.json')"], {
    cwd: join(packagesDir, 'native-epoll'),
    encoding: 'utf8',
  }).stdout.trim(),
);
const baseFlags = [
  ...common.cflags_cc,
  ...common.defines.map((d) => `-D${d}`),
  '-DBUILDING_NODE_EXTENSION',
  '-fPIC',
  '-fvisibility=hidden',
  ...['include', 'src'].map((d) => `-I${join(root, 'native', d)}`),
  `-I${addonApi}`,
  `-I${nodeInclude}`,
];

function compilerFor(target) {
  if (target.toolchain === 'gcc') return { command: target.cxx, prefix: [] };
  return { command: zigBinary(), prefix: ['c++', '-target', target.triple] };
}

function linkFlags(target) {
  if (target.toolchain === 'gcc')
    return [
      '-shared',
      '-pthread',
      '-static-libstdc++',
      '-static-libgcc',
      '-Wl,--exclude-libs,ALL',
      '-Wl,--as-needed',
    ];
  if (target.os === 'darwin') return ['-shared', '-undefined', 'dynamic_lookup'];
  return ['-shared', '-pthread'];
}

async function buildTarget(target) {
  if (target.toolchain === 'mingw') {
    const result = spawnSync(process.execPath, [join(root, 'scripts', 'build-win32.mjs')], {
      stdio: 'inherit',
    });
    return result.status === 0;
  }
  const { command, prefix } = compilerFor(target);
  const objDir = join(objRoot, target.tag);
  mkdirSync(objDir, { recursive: true });
  const nativeNewest = newestMtime(join(root, 'native'));
  const objects = new Map();
  const jobs = [];
  const addons = [];
  for (const packageDir of packagesFor(target)) {
    for (const addon of addonsOf(packageDir, GYP_OS[target.os])) {
      addons.push({ packageDir, ...addon });
      for (const source of addon.sources) {
        if (objects.has(source)) continue;
        const object = join(objDir, `${relative(root, source).replaceAll('/', '_')}.o`);
        objects.set(source, object);
        const includes = [...new Set(addon.includes)].map((d) => `-I${d}`);
        const inputsNewest = Math.max(
          nativeNewest,
          newestMtime(join(packageDir, 'src')),
          statSync(source).mtimeMs,
        );
        if (existsSync(object) && statSync(object).mtimeMs >= inputsNewest) continue;
        jobs.push(async () => {
          const args = [...prefix, ...baseFlags, ...includes, '-c', source, '-o', object];
          return { what: relative(root, source), ...(await run(command, args)) };
        });
      }
    }
  }
  console.log(
    `${target.tag}: compiling ${jobs.length} of ${objects.size} sources (${command.split('/').pop()} ${prefix.join(' ')})`,
  );
  const compiled = await pool(jobs, Math.max(1, availableParallelism()));
  const failed = compiled.filter((r) => r.code !== 0 || /warning:/.test(r.output));
  for (const r of failed) console.log(`  ${target.tag}: ${r.what}\n${r.output}`);
  if (failed.length > 0) return false;
  let ok = true;
  for (const addon of addons) {
    const output = prebuildFile(addon.packageDir, target, addon.name);
    mkdirSync(dirname(output), { recursive: true });
    const args = [
      ...prefix,
      ...linkFlags(target),
      '-o',
      output,
      ...addon.sources.map((s) => objects.get(s)),
    ];
    const result = await run(command, args);
    const cpu = result.code === 0 && existsSync(output) ? binaryCpu(output) : undefined;
    if (result.code !== 0 || /warning:/.test(result.output) || cpu !== target.arch) {
      console.log(`  ${target.tag}: linking ${addon.name} failed (cpu ${cpu})\n${result.output}`);
      ok = false;
      continue;
    }
    const glibc = target.libc === 'glibc' ? `, needs GLIBC ${newestGlibc(output)}` : '';
    const size = (statSync(output).size / 1024).toFixed(0);
    console.log(`  ${relative(root, output)} (${cpu}, ${size} KiB${glibc})`);
  }
  return ok;
}

let ok = true;
for (const target of targets) {
  const started = Date.now();
  if (!(await buildTarget(target))) ok = false;
  console.log(`${target.tag}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
console.log(ok ? 'prebuild passed' : 'prebuild FAILED');
process.exit(ok ? 0 : 1);
