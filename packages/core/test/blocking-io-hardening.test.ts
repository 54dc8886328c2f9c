// blocking_io's own hardening: tuning knobs arriving through EngineConfig, adopt failures that
// must not close an fd under a running thread, the interrupt signal left to the application, and
// engine teardown while threads are still in blocking calls, and what a destroy() sends the peer.
import { spawnSync } from 'node:child_process';
import { closeSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { Connection } from '../src/index.js';
import {
  getBackendModule,
  type DetachedSocket,
  type NativeAddon,
  type NativeBackendHandle,
  type NativeBackendOptions,
} from '../src/backend-api.js';
import { backends, backendTitle, howItEnds, netConnect, reactorOn, sleep } from './helpers.js';

const EAGAIN = 11;
const exitMain = fileURLToPath(new URL('./fixtures/blocking-exit-main.mjs', import.meta.url));
const signalChild = fileURLToPath(new URL('./fixtures/blocking-signal-child.cjs', import.meta.url));
/** SIGRTMIN+5 under glibc (SIGRTMIN is 34: glibc keeps 32 and 33), the signal blocking_io prefers. */
const SIGRTMIN_5 = 39;

/** True when `signal` is in a /proc/<pid>/status signal mask (hex, bit n-1 for signal n). */
function inMask(mask: string, signal: number): boolean {
  return ((BigInt(`0x${mask}`) >> BigInt(signal - 1)) & 1n) === 1n;
}

/** What the signal fixture prints: how detach() went and the process's signal masks. */
interface SignalReport {
  detach: string | number;
  sigIgn: string;
  sigCgt: string;
}

/** Runs the signal fixture through bash, `prelude` first (e.g. a trap), and parses its report. */
function runSignalChild(
  prelude: string,
  args: string[] = [],
): {
  report: SignalReport;
  out: string;
  status: number | null;
  signal: string | null;
} {
  const result = spawnSync(
    'bash',
    ['-c', `${prelude} exec "$0" "$@"`, process.execPath, signalChild, ...args],
    { encoding: 'utf8', timeout: 20_000 },
  );
  const first = result.stdout.split('\n')[0] ?? '';
  if (!first.startsWith('{')) throw new Error(`child failed: ${result.stdout} ${result.stderr}`);
  return {
    report: JSON.parse(first) as SignalReport,
    out: result.stdout,
    status: result.status,
    signal: result.signal,
  };
}

const blocking = backends.find((b) => b.name === 'blocking_io') ?? {
  name: 'blocking_io',
  available: false,
  cause: 'not a known backend',
};

/** Handles a test opened, closed afterwards even when it fails. */
const opened: NativeBackendHandle[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  for (const handle of opened.splice(0)) handle.close();
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise<void>((resolve) => {
          server.close(() => {
            resolve();
          });
        }),
    ),
  );
});

function addon(): NativeAddon {
  return getBackendModule('blocking_io').addon();
}

/** A batch callback for engines whose events the test does not look at. */
function ignoreBatch(): void {
  // Nothing: the test reads the engine's return values, not its events.
}

/** A server connection handler that keeps the socket open and never reads it. */
function silentPeer(socket: net.Socket): void {
  socket.on('error', ignoreBatch);
}

/** A blocking_io engine created directly, so its options (tuning) are exactly the test's. */
function openEngine(
  tuning?: Record<string, number>,
  onEvents: (count: number, slab: Buffer | undefined) => void = ignoreBatch,
): NativeBackendHandle {
  const options: NativeBackendOptions = {
    maxEvents: 256,
    readChunk: 64 * 1024,
    slabBytes: 1024 * 1024,
    ...(tuning === undefined ? {} : { tuning }),
  };
  const handle = new (addon().NativeBackend)(options, onEvents);
  opened.push(handle);
  return handle;
}

/** A node:net server on 127.0.0.1 that keeps its sockets open. */
async function netServer(): Promise<number> {
  const server = net.createServer(silentPeer);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** Polls `done` every 5 ms for up to `ms`; true when it held. */
async function until(done: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}

/** An engine whose batches are recorded as [type, id, a, b] tuples. */
function recordingEngine(tuning?: Record<string, number>): {
  engine: NativeBackendHandle;
  events: number[][];
} {
  const events: number[][] = [];
  const { EVENT_INTS } = addon().events;
  const engine = openEngine(tuning, (count) => {
    for (let i = 0; i < count; i += 1) {
      const at = i * EVENT_INTS;
      events.push([...engine.events.subarray(at, at + 4)]);
    }
  });
  expect(engine.start()).toBe(0);
  return { engine, events };
}

describe.skipIf(!blocking.available)(backendTitle(blocking), () => {
  describe('tuning from EngineConfig', () => {
    it('blockingMaxThreads bounds the thread slots (2 per connection, 1 per listener)', async () => {
      const port = await netServer();
      const engine = openEngine({ blockingMaxThreads: 3 });
      const conn = engine.connect('127.0.0.1', port);
      expect(conn).toBeGreaterThanOrEqual(0);
      const listener = engine.listen('127.0.0.1', 0, 16, false, false);
      expect(listener).toBeGreaterThanOrEqual(0);
      // All three slots are taken: neither another listener nor another connection fits.
      expect(engine.listen('127.0.0.1', 0, 16, false, false)).toBe(-EAGAIN);
      expect(engine.connect('127.0.0.1', port)).toBe(-EAGAIN);
      // Closing the connection gives its two slots back once its reader thread has left and the
      // engine dropped what the thread had posted (at the next poll).
      expect(engine.destroy(conn)).toBe(0);
      const deadline = Date.now() + 5000;
      let again = -EAGAIN;
      while (again === -EAGAIN && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        engine.poll();
        again = engine.connect('127.0.0.1', port);
      }
      expect(again).toBeGreaterThanOrEqual(0);
    });

    it('the engine no longer reads IOMUX_BLOCKING_MAX_THREADS itself', async () => {
      const port = await netServer();
      const saved = process.env.IOMUX_BLOCKING_MAX_THREADS;
      process.env.IOMUX_BLOCKING_MAX_THREADS = '1';
      try {
        const engine = openEngine();
        // With the environment's bound of 1 neither would fit; the default (4096) applies.
        expect(engine.connect('127.0.0.1', port)).toBeGreaterThanOrEqual(0);
        expect(engine.listen('127.0.0.1', 0, 16, false, false)).toBeGreaterThanOrEqual(0);
      } finally {
        if (saved === undefined) delete process.env.IOMUX_BLOCKING_MAX_THREADS;
        else process.env.IOMUX_BLOCKING_MAX_THREADS = saved;
      }
    });

    it('blockingStackKb at its minimum (16) still runs the threads', async () => {
      const received: Buffer[] = [];
      const server = net.createServer((socket) => socket.on('data', (d) => received.push(d)));
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as net.AddressInfo).port;
      const { CONNECT, EVENT_INTS } = addon().events;
      let connected = -1;
      const engine = openEngine({ blockingStackKb: 16 }, (count) => {
        for (let i = 0; i < count; i += 1) {
          if (engine.events[i * EVENT_INTS] === CONNECT)
            connected = engine.events[i * EVENT_INTS + 2]!;
        }
      });
      const id = engine.connect('127.0.0.1', port);
      expect(id).toBeGreaterThanOrEqual(0);
      expect(engine.start()).toBe(0);
      const deadline = Date.now() + 5000;
      while (connected < 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(connected).toBe(0);
      expect(engine.write(id, Buffer.from('small stack'))).toBeGreaterThanOrEqual(0);
      while (Buffer.concat(received).length < 11 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(Buffer.concat(received).toString()).toBe('small stack');
    });
  });

  describe('defect 10: a failed adopt hands the fd back with no thread on it', () => {
    it('the writer started by adopt() sends nothing once adopt() failed and the fd was closed', async () => {
      // A peer that does not read, so the sender's queue stays full and its writer blocks.
      let peer: net.Socket | undefined;
      let received = 0;
      let peerClosed = false;
      const server = net.createServer((socket) => {
        peer = socket;
        socket.pause();
        socket.on('data', (d) => (received += d.length));
        socket.on('close', () => (peerClosed = true));
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as net.AddressInfo).port;
      const { CONNECT } = addon().events;

      const a = recordingEngine();
      const id = a.engine.connect('127.0.0.1', port);
      expect(id).toBeGreaterThanOrEqual(0);
      expect(await until(() => a.events.some((e) => e[0] === CONNECT && e[1] === id))).toBe(true);
      const total = 32 * 1024 * 1024;
      expect(a.engine.write(id, Buffer.alloc(total, 7))).toBeGreaterThan(0);
      expect(await until(() => peer !== undefined)).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the writer is blocked by now
      const detached = a.engine.detach(id);
      expect(Array.isArray(detached)).toBe(true);
      const [fd, flags, unsent] = detached as DetachedSocket;
      expect(unsent.length).toBeGreaterThan(0);
      const sentBefore = total - unsent.length;

      // Engine B may start one thread: adopt() starts the writer for the unsent bytes, then fails
      // to start the reader.
      const b = openEngine({ faultThreadStartsBefore: 1 });
      expect(b.adopt(fd, flags, unsent, 0)).toBe(-EAGAIN);
      // The caller owns the fd again and closes it, as the reactor's migration does.
      closeSync(fd);
      peer!.resume();
      // The peer sees exactly the bytes engine A sent, then the connection end: nothing from B.
      expect(await until(() => peerClosed)).toBe(true);
      expect(received).toBe(sentBefore);
    });
  });

  describe.skipIf(process.platform !== 'linux')(
    "defect 10: the interrupt signal stays the application's",
    () => {
      it('a signal the application ignores stays ignored; detach() interrupts with another one', () => {
        const { report } = runSignalChild('trap "" RTMIN+5;');
        expect(report.detach).toBe('ok');
        expect(inMask(report.sigIgn, SIGRTMIN_5)).toBe(true);
        expect(inMask(report.sigCgt, SIGRTMIN_5)).toBe(false);
      });

      it('a signal left at its default still terminates the process when someone else sends it', () => {
        const { report, out, status, signal } = runSignalChild('', ['raise', String(SIGRTMIN_5)]);
        expect(report.detach).toBe('ok');
        // detach() used it, so the handler is ours, yet the default action still happened.
        expect(inMask(report.sigCgt, SIGRTMIN_5)).toBe(true);
        expect(out).not.toContain('survived');
        expect(status === 128 + SIGRTMIN_5 || signal !== null).toBe(true);
      });
    },
  );

  describe('defect 1 (engine side): a worker ending with I/O in flight', () => {
    it('10 terminate() and 10 process.exit() of a worker whose threads are in recv/sendmsg/accept leave the process alive', () => {
      // Run in a child process: the crash this guards against (threads running the addon's code
      // after Node unloaded it with the worker) is a SIGSEGV of the whole process.
      const result = spawnSync(process.execPath, [exitMain, '10'], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect({ status: result.status, signal: result.signal, stderr: result.stderr }).toEqual({
        status: 0,
        signal: null,
        stderr: '',
      });
      expect(result.stdout).toContain('survived 20');
    });
  });
});

// blocking_io's reader takes bytes from the kernel before the application asks for them (about
// one read chunk ahead), so "unread input" at a destroy() may sit in its inbox with the kernel's
// receive queue empty. The peer must still see the reset it sees from every other backend, whose
// unread bytes are still in the kernel. Run on every backend: the others are the reference.
describe.each(backends)(
  'destroy() of a connection whose unread input was read ahead',
  (backend) => {
    describe.skipIf(!backend.available)(backendTitle(backend), () => {
      it('the peer sees ECONNRESET, not a clean end', async () => {
        const reactor = reactorOn(backend.name);
        const clients: net.Socket[] = [];
        try {
          let server: Connection | undefined;
          const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
            server = conn;
          });
          const socket = await netConnect(listener.port);
          clients.push(socket);
          const outcome = howItEnds(socket);
          await until(() => server !== undefined);
          // Reading when the bytes come (blocking_io's reader is in recv() by now), then paused:
          // the bytes are taken from the kernel but never delivered.
          await sleep(20);
          server!.pause();
          socket.write(Buffer.alloc(100, 3));
          await sleep(50);
          server!.destroy();
          expect(await outcome).toBe('ECONNRESET');
        } finally {
          for (const c of clients) c.destroy();
          await reactor.close();
        }
      });
    });
  },
);

describe.skipIf(!blocking.available)(
  `${backendTitle(blocking)}: destroy() with a blocked writer`,
  () => {
    it('the writer leaves its send although the write side is not shut, and frees its slots', async () => {
      // The peer never reads, so the writer waits for room that never comes; destroy() no longer
      // shuts the write side (that would send a FIN), so nothing but its own wake-up ends the wait.
      const peers: net.Socket[] = [];
      const server = net.createServer((socket) => {
        socket.on('error', ignoreBatch);
        peers.push(socket); // destroyed at the end: the unsent bytes and the FIN would wait forever
      });
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as net.AddressInfo).port;
      const { CONNECT } = addon().events;
      const { engine, events } = recordingEngine({ blockingMaxThreads: 2 });
      const id = engine.connect('127.0.0.1', port);
      expect(id).toBeGreaterThanOrEqual(0);
      expect(await until(() => events.some((e) => e[0] === CONNECT && e[1] === id))).toBe(true);
      expect(engine.write(id, Buffer.alloc(32 * 1024 * 1024, 5))).toBeGreaterThan(0);
      await sleep(50); // the writer is waiting for room by now
      expect(engine.destroy(id)).toBe(0);
      // Both slots come back once the reader and the writer have left.
      let again = -EAGAIN;
      const deadline = Date.now() + 5000;
      while (again === -EAGAIN && Date.now() < deadline) {
        await sleep(5);
        engine.poll();
        again = engine.connect('127.0.0.1', port);
      }
      for (const peer of peers) peer.destroy();
      expect(again).toBeGreaterThanOrEqual(0);
    });
  },
);
