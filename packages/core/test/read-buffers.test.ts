// Who owns read bytes (issue #24): batches are read into pooled arenas that JS sees without a
// copy. With readBuffers 'owned' (default) a chunk kept by the user never changes, even after its
// arena's neighbours were collected and their memory reused; with 'transient' every read reuses one
// buffer, no ArrayBuffer is allocated per read, and the reactor copies only what it keeps itself.
import net from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, createReactor, type Reactor } from '../src/index.js';
import {
  backends,
  echo,
  fdCount,
  netConnect,
  netRoundTrip,
  pattern,
  reactorOn,
  sleep,
  until,
} from './helpers.js';

// A full garbage collection on demand, so retired arenas are collected (and reused) mid-test.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

// Small batches: every few KiB of input retires an arena, so a test of a few hundred KiB goes
// through many arenas and, after collections, takes recycled ones.
const SMALL = { readChunk: 1024, slabBytes: 4096 } as const;

/** Writes `payload` in `pieces` parts with a pause between them, so they arrive in many batches. */
async function trickle(socket: net.Socket, payload: Buffer, pieces: number): Promise<void> {
  const step = Math.ceil(payload.length / pieces);
  for (let at = 0; at < payload.length; at += step) {
    socket.write(payload.subarray(at, at + step));
    await sleep(2);
  }
}

describe.each(backends)('read buffers: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  let reactor: Reactor | undefined;
  let fdsBefore = 0;
  const clients: net.Socket[] = [];

  beforeEach(() => {
    fdsBefore = fdCount();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await reactor?.close();
    reactor = undefined;
    await until(() => fdCount() <= fdsBefore, 5000, `fd count back to ${fdsBefore}`);
  });

  run('owned: chunks the user keeps never change while arenas are recycled', async () => {
    const r = reactorOn(backend.name, SMALL);
    reactor = r;
    const kept: { at: number; bytes: Buffer }[] = [];
    let received = 0;
    let index = 0;
    const listener = await r.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('data', (chunk: Buffer) => {
        // Keep one chunk in 16, and of another one in 16 only a derived view (the chunk itself
        // is dropped): both must keep their arena alive. Everything else becomes garbage at once,
        // so the arenas holding only such chunks are collected and reused.
        if (index % 16 === 0) kept.push({ at: received, bytes: chunk });
        else if (index % 16 === 8 && chunk.length > 1)
          kept.push({ at: received + 1, bytes: chunk.subarray(1) });
        received += chunk.length;
        index += 1;
      });
    });
    const payload = pattern(512 * 1024, 24);
    const socket = await netConnect(listener.port);
    clients.push(socket);
    const step = payload.length / 8;
    for (let at = 0; at < payload.length; at += step) {
      await trickle(socket, payload.subarray(at, at + step), 16);
      await until(() => received >= at + step, 10_000, `${at + step} bytes received`);
      collectGarbage();
      await sleep(5); // finalizers give arenas back from an immediate
    }
    const stats = r.stats();
    expect(received).toBe(payload.length);
    // The test went through many arenas and reused collected ones.
    expect(stats.readArenasReused).toBeGreaterThan(0);
    expect(kept.length).toBeGreaterThan(4);
    for (const { at, bytes } of kept)
      expect(bytes.equals(payload.subarray(at, at + bytes.length))).toBe(true);
  });

  run('owned: echo stays byte-exact through recycled arenas', async () => {
    const r = reactorOn(backend.name, SMALL);
    reactor = r;
    const listener = await r.listen({ host: '127.0.0.1', port: 0 }, echo);
    const payload = pattern(2 * 1024 * 1024, 7);
    const echoed = await netRoundTrip(listener.port, payload);
    expect(echoed.equals(payload)).toBe(true);
  });

  run('transient: one buffer serves every read, so no ArrayBuffer per read', async () => {
    const r = reactorOn(backend.name, { ...SMALL, readBuffers: 'transient' });
    reactor = r;
    const buffers = new Set<ArrayBufferLike>();
    let chunks = 0;
    let received = 0;
    const listener = await r.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('data', (chunk: Buffer) => {
        buffers.add(chunk.buffer);
        chunks += 1;
        received += chunk.length;
        conn.write(chunk); // safe: sent or copied into the native queue before write() returns
      });
    });
    const socket = await netConnect(listener.port);
    clients.push(socket);
    const payload = pattern(1024 * 1024, 3);
    // Checked as it arrives and dropped, so the client keeps no ArrayBuffer either.
    let echoed = 0;
    let intact = true;
    socket.on('data', (chunk: Buffer) => {
      intact &&= chunk.equals(payload.subarray(echoed, echoed + chunk.length));
      echoed += chunk.length;
    });
    await trickle(socket, payload, 256);
    await until(() => received === payload.length, 10_000, 'everything received');
    await until(() => echoed === payload.length, 10_000, 'everything echoed');
    expect(intact).toBe(true);
    expect(chunks).toBeGreaterThan(50);
    // Every chunk was a view of the same ArrayBuffer: none was allocated per read, and the
    // backend never needed a second arena.
    expect(buffers.size).toBe(1);
    expect(r.stats().readArenas).toBe(1);
  });

  run('transient: async iteration keeps its own copies', async () => {
    const r = reactorOn(backend.name, { ...SMALL, readBuffers: 'transient' });
    reactor = r;
    const got: Buffer[] = [];
    let done = false;
    const listener = await r.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      void (async () => {
        for await (const chunk of conn) {
          got.push(chunk);
          await sleep(1); // later polls read into the same buffer meanwhile
        }
        done = true;
      })();
    });
    const payload = pattern(256 * 1024, 11);
    const socket = await netConnect(listener.port);
    clients.push(socket);
    await trickle(socket, payload, 64);
    socket.end();
    await until(() => done, 10_000, 'iteration to end');
    expect(Buffer.concat(got).equals(payload)).toBe(true);
  });

  run('transient: bytes held while paused are copies', async () => {
    const r = reactorOn(backend.name, { ...SMALL, readBuffers: 'transient' });
    reactor = r;
    const got: Buffer[] = [];
    const listener = await r.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.on('data', (chunk: Buffer) => {
        got.push(Buffer.from(chunk));
        // Pause after every chunk and resume later: events of the batch that come after the
        // pause are held by the reactor past this listener.
        conn.pause();
        setTimeout(() => {
          conn.resume();
        }, 1);
      });
    });
    const payload = pattern(256 * 1024, 5);
    const socket = await netConnect(listener.port);
    clients.push(socket);
    await trickle(socket, payload, 64);
    await until(
      () => got.reduce((n, c) => n + c.length, 0) === payload.length,
      10_000,
      'everything received',
    );
    expect(Buffer.concat(got).equals(payload)).toBe(true);
  });
});

it('rejects an unknown readBuffers value with a ConfigError naming it', () => {
  const attempt = (): unknown =>
    createReactor({ ioModel: 'auto' }, { readBuffers: 'borrowed' as 'owned' });
  expect(attempt).toThrow(ConfigError);
  expect(attempt).toThrow(/readBuffers.*borrowed/);
});
