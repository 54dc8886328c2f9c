// The ten-line echo server of docs/guides/using-iomux.md, read from the guide itself and run as a
// user would run it: a child `node` process in a project that depends on @iomux/core
// (examples/echo), a node:net client that must get its bytes back, and SIGINT that must end the
// process cleanly through reactor.close().
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const guide = fileURLToPath(new URL('../../../docs/guides/using-iomux.md', import.meta.url));
const project = fileURLToPath(new URL('../../../examples/echo/', import.meta.url));

/** The first js code block after the heading that names the ten-line server. */
function snippet(): string {
  const text = readFileSync(guide, 'utf8');
  const section = text.indexOf('## A ten-line echo server');
  expect(section, 'the guide has its "A ten-line echo server" section').toBeGreaterThan(0);
  const match = /```js\n([\s\S]*?)```/.exec(text.slice(section));
  expect(match, 'the section has a js code block').not.toBeNull();
  return match?.[1] ?? '';
}

/** A port nothing listens on now (node:net picks it, then lets it go). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves with the child's first stdout line; rejects if it exits first. */
function firstLine(proc: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const onExit = (code: number | null): void => {
      reject(new Error(`server exited (${String(code)}) before printing: ${err}`));
    };
    proc.once('exit', onExit);
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        proc.off('exit', onExit);
        resolve(out.slice(0, nl));
      }
    });
  });
}

/**
 * Sends payload, resolves with everything echoed once payload.length bytes came back. With
 * holdMs, the client reads nothing for that long first, so the server's write queue fills past
 * its high-water mark and the snippet's pause() / 'drain' → resume() lines must do their work.
 */
function echoOver(port: number, payload: Buffer, holdMs = 0): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const parts: Buffer[] = [];
    let received = 0;
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      received += d.length;
      if (received >= payload.length) socket.end();
    });
    socket.on('close', () => {
      resolve(Buffer.concat(parts));
    });
    if (holdMs > 0) {
      socket.pause();
      setTimeout(() => socket.resume(), holdMs);
    }
    socket.write(payload);
  });
}

describe('docs/guides/using-iomux.md: the ten-line echo server', () => {
  let proc: ChildProcess | undefined;
  afterEach(async () => {
    if (proc?.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    }
    proc = undefined;
  });

  it('is ten lines of code', () => {
    const lines = snippet()
      .split('\n')
      .filter((l) => l.trim() !== '');
    expect(lines.length).toBeLessThanOrEqual(10);
  });

  it('serves a node:net client, and SIGINT ends it with status 0', async () => {
    const port = await freePort();
    proc = spawn(process.execPath, ['--input-type=module', '-e', snippet()], {
      cwd: project,
      env: { ...process.env, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const line = await firstLine(proc);
    expect(line).toMatch(new RegExp(`^echo server on 127\\.0\\.0\\.1:${String(port)} \\(\\w+\\)$`));

    // 32 MiB while the client reads nothing for 500 ms: more than loopback's socket buffers take,
    // so the server's queue passes the 64 KiB high-water mark; without the 'drain' line the echo
    // stops there (checked by deleting it).
    const payload = Buffer.alloc(32 << 20);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff;
    const [small, big] = await Promise.all([
      echoOver(port, Buffer.from('hello\n')),
      echoOver(port, payload, 500),
    ]);
    expect(small.toString()).toBe('hello\n');
    expect(big.equals(payload)).toBe(true);

    const exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    proc.kill('SIGINT');
    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
  });
});
