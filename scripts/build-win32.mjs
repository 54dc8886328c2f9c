// Cross-compiles the win32-x64 N-API addons with mingw-w64 (toolchain: scripts/iocp-toolchain.sh).
//   node scripts/build-win32.mjs [package-dir ...]   default: every package whose binding.gyp
//                                                    has an OS=="win" condition
// The source lists and defines come from each package's binding.gyp (its `OS=="win"` conditions
// included) and native/common.gypi, never a copy. Each addon is written to
// <package>/prebuilds/win32-x64/<target>.node, where node-gyp-build finds it on Windows; the
// addons link against node.exe's N-API exports only (no libuv symbol), warnings are errors.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tools = process.env.IOMUX_IOCP_TOOLS ?? join(root, 'node_modules', '.iocp');
// mingw-w64 with posix threads (std::thread); on a Windows runner, MSYS2's g++ (IOMUX_WIN32_CXX=g++).
const compiler = process.env.IOMUX_WIN32_CXX ?? 'x86_64-w64-mingw32-g++-posix';

// gyp files are Python literals: '#' comments, single or double quotes, trailing commas. With the
// comments gone they are valid JS expressions.
function readGyp(path) {
  const text = readFileSync(path, 'utf8')
    .split('\n')
    .map((line) => line.replace(/^(\s*)#.*$/, '$1'))
    .join('\n');
  return Function(`"use strict"; return (${text});`)();
}

// Applies gyp `conditions` for OS=="win" (other conditions are false on this target) to a dict.
function resolveConditions(dict) {
  const out = { ...dict };
  delete out.conditions;
  for (const [condition, whenTrue, whenFalse] of dict.conditions ?? []) {
    const branch = /^\s*OS\s*==\s*["']win["']\s*$/.test(condition) ? whenTrue : whenFalse;
    for (const [key, value] of Object.entries(branch ?? {})) {
      out[key] = Array.isArray(value) ? [...(out[key] ?? []), ...value] : value;
    }
  }
  return out;
}

function hasWindowsTarget(gyp) {
  return gyp.targets.some((t) =>
    (t.conditions ?? []).some(([c]) => /OS\s*==\s*["']win["']/.test(c)),
  );
}

function newestMtime(path) {
  const info = statSync(path);
  if (!info.isDirectory()) return info.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((entry) => newestMtime(join(path, entry))));
}

const common = readGyp(join(root, 'native', 'common.gypi')).target_defaults;
const nativeDir = join(root, 'native');

async function buildPackage(packageDir) {
  const gyp = readGyp(join(packageDir, 'binding.gyp'));
  const require = createRequire(join(packageDir, 'package.json'));
  const addonApi = require('node-addon-api').include_dir;
  const outDir = join(packageDir, 'prebuilds', 'win32-x64');
  mkdirSync(outDir, { recursive: true });
  const byName = new Map(gyp.targets.map((t) => [t.target_name, resolveConditions(t)]));
  for (const rawTarget of gyp.targets) {
    // A static library is not an addon: its sources, include dirs and libraries go into each
    // target that depends on it (one static link per addon, as gyp does).
    const own = byName.get(rawTarget.target_name);
    if (own.type === 'none' || own.type === 'static_library') continue;
    const target = { ...own };
    for (const name of own.dependencies ?? []) {
      const dependency = byName.get(name);
      if (dependency === undefined) throw new Error(`${packageDir}: unknown dependency ${name}`);
      for (const key of ['sources', 'include_dirs', 'libraries', 'defines']) {
        target[key] = [...(dependency[key] ?? []), ...(target[key] ?? [])];
      }
    }
    const sources = (target.sources ?? []).map((s) => resolve(packageDir, s));
    if (sources.length === 0) continue;
    const output = join(outDir, `${target.target_name}.node`);
    const inputs = [join(packageDir, 'binding.gyp'), join(packageDir, 'src'), nativeDir];
    const newest = Math.max(...inputs.filter((p) => existsSync(p)).map(newestMtime));
    if (existsSync(output) && statSync(output).mtimeMs >= newest) continue;
    const defines = [
      ...common.defines,
      ...(target.defines ?? []),
      `NODE_GYP_MODULE_NAME=${target.target_name}`,
      '_WIN32_WINNT=0x0A00',
      'WIN32_LEAN_AND_MEAN',
      'NOMINMAX',
    ];
    const includes = [
      join(tools, 'node-api-headers', 'include'),
      addonApi,
      join(nativeDir, 'src', 'platform_win32_include'),
      join(nativeDir, 'include'),
      join(nativeDir, 'src'),
      ...(target.include_dirs ?? []).map((d) => resolve(packageDir, d)),
    ];
    const flags = [
      '-std=c++17',
      '-O2',
      '-Wall',
      '-Wextra',
      '-Werror',
      '-Wno-missing-field-initializers',
      ...defines.map((d) => `-D${d}`),
      ...includes.map((d) => `-I${d}`),
    ];
    console.log(`win32-x64: ${relative(root, output)}`);
    const objDir = join(packageDir, 'build', 'win32-x64', target.target_name); // build/ is ignored
    mkdirSync(objDir, { recursive: true });
    const objects = sources.map((src, i) => join(objDir, `${i}-${basename(src, '.cc')}.o`));
    const compiled = await Promise.all(
      sources.map((src, i) =>
        compileLimit(() => spawnCompiler([...flags, '-c', src, '-o', objects[i]])),
      ),
    );
    const linked =
      compiled.every((status) => status === 0) &&
      (await spawnCompiler([
        '-shared',
        ...objects,
        join(tools, 'libnode.a'),
        // One self-contained DLL: no libstdc++/libwinpthread DLL has to travel with it.
        '-static',
        '-static-libgcc',
        '-static-libstdc++',
        ...(target.libraries ?? []),
        '-o',
        output,
      ])) === 0;
    if (!linked) {
      console.error(`win32-x64 build failed: ${target.target_name}`);
      process.exit(1);
    }
  }
}

function spawnCompiler(args) {
  return new Promise((done) => {
    const child = spawn(compiler, args, { stdio: 'inherit', shell: process.platform === 'win32' });
    child.on('error', () => done(1));
    child.on('close', (status) => done(status ?? 1));
  });
}

// At most as many compiles at once as there are cores.
const jobs = Math.max(1, availableParallelism());
let running = 0;
const waiting = [];
async function compileLimit(task) {
  if (running >= jobs) await new Promise((go) => waiting.push(go));
  running += 1;
  try {
    return await task();
  } finally {
    running -= 1;
    waiting.shift()?.();
  }
}

const requested = process.argv.slice(2);
const packageDirs =
  requested.length > 0
    ? requested.map((p) => resolve(p))
    : readdirSync(join(root, 'packages'))
        .map((name) => join(root, 'packages', name))
        .filter((dir) => existsSync(join(dir, 'binding.gyp')))
        .filter((dir) => hasWindowsTarget(readGyp(join(dir, 'binding.gyp'))));
for (const dir of packageDirs) await buildPackage(dir);
