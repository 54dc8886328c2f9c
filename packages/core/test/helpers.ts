import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { afterEach, beforeEach, expect, it } from 'vitest';
import {
  createReactor,
  getBackend,
  IomuxError,
  type BackendName,
  type Connection,
  type Reactor,
  type ReactorOptions,
} from '../src/index.js';
import { BACKEND_NAMES } from '../src/config.js';
import { pattern } from './fixtures/pattern.mjs';

/** Where this process's open fds are listed: /proc on Linux, /dev/fd on macOS and FreeBSD. */
export const FD_DIR = existsSync('/proc/self/fd') ? '/proc/self/fd' : '/dev/fd';

/** Open fds of this process, to prove a test leaked none. */
export function fdCount(): number {
  return readdirSync(FD_DIR).length;
}

/** Every backend with its availability, for describe.each / skipIf. */
export const backends = BACKEND_NAMES.map((name) => {
  const { available, cause } = getBackend(name);
  return { name, available, cause: cause ?? '' };
});

/** A describe-block title that names the skip reason when the backend cannot run here. */
/**
 * Sends `msg` (if any) to a child process over IPC and resolves with its next message. Rejects
 * when the child exits first, or when `timeoutMs` is given and passes without an answer.
 */
export function askChild<Reply = Record<string, number | string | boolean>>(
  proc: ChildProcess,
  msg?: string,
  timeoutMs?: number,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            reject(new Error(`no answer from the child to ${msg ?? 'start'}`));
          }, timeoutMs);
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code})`));
    };
    proc.once('exit', onExit);
    proc.once('message', (reply) => {
      clearTimeout(timer);
      proc.off('exit', onExit);
      resolve(reply as Reply);
    });
    if (msg !== undefined) proc.send(msg);
  });
}

/**
 * Why a runtime-fallback test from `from` to `to` cannot run here (the unavailable backend and
 * its cause), or '' when both backends are available.
 */
export function fallbackSkip(from: BackendName, to: BackendName): string {
  for (const name of [from, to]) {
    const backend = backends.find((b) => b.name === name);
    if (backend && !backend.available) return `${name}: ${backend.cause}`;
  }
  return '';
}

/** Each Linux readiness or completion backend (and the kqueue emulation) to each fallback. */
export const FALLBACK_PAIRS: readonly (readonly ['epoll' | 'io_uring' | 'kqueue', BackendName])[] =
  [
    ['epoll', 'select'],
    ['epoll', 'blocking_io'],
    ['io_uring', 'select'],
    ['io_uring', 'blocking_io'],
    ['kqueue', 'select'],
  ];

export function backendTitle(b: { name: string; available: boolean; cause: string }): string {
  return b.available ? b.name : `${b.name} (skipped: ${b.cause})`;
}

/**
 * A reactor forced onto one backend (no silent fallback: the test fails if another is used). The
 * reactor sees the rest of `process.env` (tuning variables such as `IOMUX_IOURING_SINGLESHOT`),
 * plus `options.env` if given; only `IOMUX_BACKEND` is overridden.
 */
export function reactorOn(name: BackendName, options: ReactorOptions = {}): Reactor {
  const reactor = createReactor(
    { ioModel: 'auto', retry: { fallback: [name] } },
    {
      closeTimeoutMs: 2000,
      ...options,
      env: { ...process.env, ...options.env, IOMUX_BACKEND: name },
    },
  );
  if (reactor.backend !== name) throw new Error(`asked for ${name}, got ${reactor.backend}`);
  return reactor;
}

/** Deterministic pseudo-random bytes (shared with the plain-node fixtures and the soak). */
export { pattern };

/** The server side of most cases: echoes everything, pausing while its write queue is full. */
export function echo(conn: Connection): void {
  conn.on('data', (chunk) => {
    if (!conn.write(chunk)) {
      conn.pause();
      conn.once('drain', () => {
        conn.resume();
      });
    }
  });
}

/** Datagram `index` of a numbered stream: the index in its first 4 bytes, then pattern bytes. */
export function numberedDatagram(index: number, size: number): Buffer {
  const payload = pattern(size, index + 1);
  payload.writeUInt32BE(index, 0);
  return payload;
}

/** A node:dgram socket on 127.0.0.1 that records what arrives, for checks independent of iomux. */
export async function dgramPeer(): Promise<{ socket: dgram.Socket; port: number; got: Buffer[] }> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  socket.setRecvBufferSize(8 * 1024 * 1024);
  const got: Buffer[] = [];
  socket.on('message', (msg) => got.push(msg));
  return { socket, port: socket.address().port, got };
}

/** Connects a node:net client, sends `payload`, resolves with the first `expect` bytes echoed. */
export function netRoundTrip(
  port: number,
  payload: Buffer,
  expect = payload.length,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    let received = 0;
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= expect) {
        socket.end();
        resolve(Buffer.concat(chunks));
      }
    });
    socket.on('connect', () => socket.write(payload));
  });
}

/** Opens a node:net connection and waits until it is established. */
export function netConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** How a client's stream ended: the error code of a reset ('ECONNRESET'), or 'end' for a FIN. */
export function howItEnds(socket: net.Socket): Promise<string> {
  return new Promise<string>((resolve) => {
    socket.on('error', (err: NodeJS.ErrnoException) => {
      resolve(err.code ?? err.message);
    });
    socket.on('end', () => {
      resolve('end');
    });
  });
}

/** Resolves when `check()` is true, polling every few ms; rejects after `timeoutMs`. */
export async function until(
  check: () => boolean,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A client of {@link streamClient}. */
export interface StreamClient {
  socket: net.Socket;
  /**
   * Settles once `total` bytes came back (or the socket closed first): how many arrived, and
   * whether each was the one sent, in order.
   */
  done: Promise<{ received: number; ok: boolean }>;
}

/**
 * A node:net client that streams `total` patterned bytes (from `seed`) in 4 KiB chunks to an
 * echo server and checks every echoed byte. With `endWhenDone` it ends its side once everything
 * came back; otherwise the caller destroys `socket`.
 */
export function streamClient(
  port: number,
  seed: number,
  total: number,
  { endWhenDone = false } = {},
): StreamClient {
  const data = pattern(total, seed);
  const socket = net.connect({ port, host: '127.0.0.1' });
  const done = new Promise<{ received: number; ok: boolean }>((resolve, reject) => {
    let received = 0;
    let ok = true;
    let sent = 0;
    const sendMore = (): void => {
      while (sent < total) {
        const end = Math.min(total, sent + 4096);
        const more = socket.write(data.subarray(sent, end));
        sent = end;
        if (!more) return;
      }
    };
    socket.on('connect', sendMore);
    socket.on('drain', sendMore);
    socket.on('data', (chunk: Buffer) => {
      if (!chunk.equals(data.subarray(received, received + chunk.length))) ok = false;
      received += chunk.length;
      if (received < total) return;
      if (endWhenDone) socket.end();
      resolve({ received, ok: ok && received === total });
    });
    socket.on('error', reject);
    socket.on('close', () => {
      resolve({ received, ok: false }); // closed before every byte came back (no-op once resolved)
    });
  });
  return { socket, done };
}

/** What {@link writeWithBackpressure} saw, filled in as it goes. */
export interface BackpressureStats {
  /** write() returned false at least once. */
  sawFalse: boolean;
  /** 'drain' events that restarted the writer. */
  drains: number;
  /** The largest writableLength seen after a write. */
  maxQueued: number;
}

/**
 * Writes `chunk` to `conn` until `total` bytes are written, stopping whenever write() returns
 * false and going on at 'drain', then ends the connection.
 */
export function writeWithBackpressure(
  conn: Connection,
  chunk: Buffer,
  total: number,
): BackpressureStats {
  const stats: BackpressureStats = { sawFalse: false, drains: 0, maxQueued: 0 };
  let sent = 0;
  const pump = (): void => {
    while (sent < total) {
      const ok = conn.write(chunk);
      sent += chunk.length;
      stats.maxQueued = Math.max(stats.maxQueued, conn.writableLength);
      if (!ok) {
        stats.sawFalse = true;
        return;
      }
    }
    conn.end();
  };
  conn.on('drain', () => {
    stats.drains += 1;
    pump();
  });
  pump();
  return stats;
}

/** What {@link useBackendFixture} keeps for the running test. */
export interface BackendFixture {
  /** A reactor on the backend, fresh for each test; a test may replace it (it is closed after). */
  reactor: Reactor;
  /** node:net clients to destroy after the test. */
  readonly clients: net.Socket[];
  /** node:net servers to close after the test. */
  readonly servers: net.Server[];
}

/**
 * Per-test set-up for a describe block over one backend: a reactor on it before each test; after
 * it, the clients and servers the test registered are closed, the reactor is closed and every fd
 * must be back. Also adds the block's "runs here" test, naming the skip reason.
 */
export function useBackendFixture(backend: (typeof backends)[number]): BackendFixture {
  const fixture = { clients: [], servers: [] } as unknown as BackendFixture;
  let fdsBefore = 0;
  beforeEach(() => {
    if (!backend.available) return;
    fdsBefore = fdCount();
    fixture.reactor = reactorOn(backend.name);
  });
  afterEach(async () => {
    if (!backend.available) return;
    for (const c of fixture.clients.splice(0)) c.destroy();
    for (const s of fixture.servers.splice(0)) await new Promise((r) => s.close(r));
    await fixture.reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, `fd count back to ${fdsBefore}`);
  });
  it(`runs here: ${backendTitle(backend)}`, () => {
    if (!backend.available) expect(backend.cause).not.toBe('');
    else expect(fixture.reactor.backend).toBe(backend.name);
  });
  return fixture;
}

/** What a call of `fn` threw, as its code and message, and whether it is an IomuxError. */
export function thrown(fn: () => unknown): { code?: string; message?: string; typed?: boolean } {
  try {
    fn();
  } catch (err) {
    return {
      code: (err as IomuxError).code,
      message: (err as Error).message,
      typed: err instanceof IomuxError,
    };
  }
  return {};
}
