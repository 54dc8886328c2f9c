// Starts and stops the benchmark's server processes: iomux's echo example on each backend,
// node:net, and the C epoll reference. Each prints its port on stdout.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('..', import.meta.url));
export const LOADGEN = `${here}native/build/loadgen`;
const C_ECHO = `${here}native/build/c-echo`;

/** Every echo contestant: name, how to start it, and the most connections it can serve. */
export function echoContestants(backends) {
  const list = backends.map((name) => ({
    name: `iomux-${name}`,
    cmd: [process.execPath, [`${root}examples/echo/server.mjs`]],
    env: { IOMUX_BACKEND: name, PORT: '0', LOG_LEVEL: 'warn' },
    // select(2) cannot watch fds past FD_SETSIZE (1024); blocking_io runs two threads per
    // connection under a default limit of 4096 threads.
    maxConnections: name === 'select' ? 900 : name === 'blocking_io' ? 2000 : Infinity,
  }));
  // The zero-allocation read mode beside the default one, on the first backend.
  if (backends.length > 0)
    list.push({
      name: `iomux-${backends[0]}-transient`,
      cmd: [process.execPath, [`${root}examples/echo/server.mjs`]],
      env: { IOMUX_BACKEND: backends[0], PORT: '0', LOG_LEVEL: 'warn', READ_BUFFERS: 'transient' },
      maxConnections:
        backends[0] === 'select' ? 900 : backends[0] === 'blocking_io' ? 2000 : Infinity,
    });
  list.push({
    name: 'node-net',
    cmd: [process.execPath, [`${here}native/node-echo.mjs`, '--port', '0']],
    env: {},
    maxConnections: Infinity,
  });
  if (existsSync(C_ECHO))
    list.push({
      name: 'c-epoll',
      cmd: [C_ECHO, ['--port', '0']],
      env: {},
      maxConnections: Infinity,
    });
  return list;
}

/** Spawns a server and resolves once it printed its port. */
export function startServer(contestant) {
  return new Promise((resolve, reject) => {
    const child = spawn(contestant.cmd[0], contestant.cmd[1], {
      env: { ...process.env, ...contestant.env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${contestant.name} did not print its port: ${output}`));
    }, 15_000);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const match =
        /(?:listening|listening on \S+?:)\s*(\d+)/.exec(output) ?? /:(\d+) \(backend/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]), pid: child.pid });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${contestant.name} exited with ${code}: ${output}`));
    });
  });
}

export async function stopServer(server) {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Runs the native load generator and returns its JSON result. */
export function runLoadgen(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(LOADGEN, [...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('exit', (code) => {
      try {
        const result = JSON.parse(out.trim().split('\n').pop());
        result.exitCode = code;
        resolve(result);
      } catch {
        reject(new Error(`loadgen failed (${code}): ${err || out}`));
      }
    });
  });
}
