// reactor.broadcast(): one payload to many connections, on every backend that can run here. The
// recipients' queues share one native copy (checked by memory: 64 stalled readers queueing 2 MiB
// each must not cost 64 copies), every byte arrives in order, and each recipient's
// maxQueuedBytes applies as write() applies it.
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Connection } from '../src/index.js';
import { backends, netConnect, reactorOn, sleep, until, useBackendFixture } from './helpers.js';

const CHUNK = 64 * 1024;

/** Chunk k of a broadcast stream: every byte is k mod 256, so a reader can check its position. */
function chunk(k: number): Buffer {
  return Buffer.alloc(CHUNK, k % 256);
}

/** Counts a client's bytes and checks each against the chunk stream it belongs to. */
function reader(socket: net.Socket): { bytes: number; ok: boolean } {
  const state = { bytes: 0, ok: true };
  socket.on('data', (data: Buffer) => {
    for (let i = 0; i < data.length; i++) {
      if (data[i] !== Math.floor((state.bytes + i) / CHUNK) % 256) {
        state.ok = false;
        break;
      }
    }
    state.bytes += data.length;
  });
  return state;
}

describe.each(backends)('broadcast: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const f = useBackendFixture(backend);

  /** `count` node:net clients of a fresh listener, with the server side of each. */
  async function room(
    count: number,
    listenOptions: { maxQueuedBytes?: number; queueLimitPolicy?: 'destroy' | 'refuse' } = {},
  ): Promise<{ servers: Connection[]; clients: net.Socket[] }> {
    const servers: Connection[] = [];
    const listener = await f.reactor.listen(
      { host: '127.0.0.1', port: 0, ...listenOptions },
      (conn) => {
        servers.push(conn);
      },
    );
    const clients: net.Socket[] = [];
    for (let i = 0; i < count; i++) {
      const socket = await netConnect(listener.port);
      socket.on('error', () => undefined);
      f.clients.push(socket);
      clients.push(socket);
    }
    await until(() => servers.length === count, 10_000, `${count} accepted`);
    // Pair each server side with its client by port, so index i is the same peer on both sides.
    const byPort = new Map(servers.map((s) => [s.remotePort, s]));
    return { servers: clients.map((c) => byPort.get(c.localPort)!), clients };
  }

  run('every recipient gets every byte, in order; strings and Buffers both go', async () => {
    const { servers, clients } = await room(40);
    const states = clients.map(reader);
    for (let k = 0; k < 32; k++) {
      const result = f.reactor.broadcast(servers, chunk(k));
      expect(result).toMatchObject({ written: 40, skipped: 0, overLimit: 0, failed: 0 });
      expect(result.refused).toEqual([]);
      if (k % 8 === 7) await sleep(1);
    }
    const total = 32 * CHUNK;
    await until(() => states.every((s) => s.bytes === total), 20_000, 'every byte');
    expect(states.every((s) => s.ok)).toBe(true);
    // A string payload is encoded once and sent as its UTF-8 bytes.
    const text: string[] = clients.map(() => '');
    clients.forEach((c, i) => {
      c.removeAllListeners('data');
      c.on('data', (d: Buffer) => (text[i] = `${text[i]!}${d.toString('utf8')}`));
    });
    expect(f.reactor.broadcast(new Set(servers), 'héllo\n').written).toBe(40);
    await until(() => text.every((t) => t === 'héllo\n'), 10_000, 'the string');
  });

  run('the stalled recipients share one queued copy, then drain byte-exact', async () => {
    const { servers, clients } = await room(64);
    for (const c of clients) c.pause(); // stop reading: kernel buffers fill, then the queues
    for (const s of servers) s.setSendBufferSize(8192);
    const states = clients.map(reader);
    const rssBefore = process.memoryUsage().rss;
    const chunks = 32; // 2 MiB per recipient, 128 MiB over the room
    let backpressured = 0;
    for (let k = 0; k < chunks; k++) {
      const result = f.reactor.broadcast(servers, chunk(k));
      expect(result.written).toBe(64);
      backpressured = result.backpressured;
    }
    const queued = servers.reduce((sum, s) => sum + s.writableLength, 0);
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    // The kernel takes a few hundred KiB per socket; the rest of 128 MiB waits in the queues...
    expect(queued).toBeGreaterThan(90 * 1024 * 1024);
    expect(backpressured).toBe(64);
    expect(f.reactor.metrics().write_queue_bytes).toBe(queued);
    // ... as references to one 2 MiB set of copies, not 64 of them (which would be > 90 MiB).
    expect(rssGrowth).toBeLessThan(40 * 1024 * 1024);
    let drains = 0;
    for (const s of servers) s.once('drain', () => (drains += 1));
    for (const c of clients) c.resume();
    const total = chunks * CHUNK;
    await until(() => states.every((s) => s.bytes === total), 60_000, 'every byte after resume');
    expect(states.every((s) => s.ok)).toBe(true);
    await until(() => drains === 64, 10_000, "every 'drain'");
    expect(f.reactor.metrics().write_queue_bytes).toBe(0);
  });

  run(
    "maxQueuedBytes: 'destroy' drops the stalled recipients only, 'refuse' lists them",
    async () => {
      const { servers, clients } = await room(6, { maxQueuedBytes: 512 * 1024 });
      const stalled = new Set([1, 4]);
      const closes: unknown[] = servers.map(() => 'open');
      servers.forEach((s, i) => s.on('close', (err) => (closes[i] = err)));
      const states = clients.map((c, i) => {
        if (stalled.has(i)) c.pause();
        servers[i]!.setSendBufferSize(8192);
        return reader(c);
      });
      let k = 0;
      let overLimit = 0;
      while (overLimit < 2 && k < 2000) {
        overLimit += f.reactor.broadcast(servers, chunk(k)).overLimit;
        k += 1;
        // The readers take each chunk before the next: only the stalled ones can reach the limit,
        // however slow the machine (under ASan, with a build beside it, a sleep(0) was not enough).
        const sent = k * CHUNK;
        await until(
          () => states.every((s, i) => stalled.has(i) || s.bytes === sent),
          20_000,
          `the readers got chunk ${k}`,
        );
      }
      expect(overLimit).toBe(2);
      for (const i of stalled) expect(servers[i]!.closed).toBe(true);
      await until(() => stalled.size === [...stalled].filter((i) => closes[i] !== 'open').length);
      for (const i of stalled) expect(closes[i]).toMatchObject({ code: 'IOMUX_QUEUE_FULL' });
      // The others got everything broadcast to them, byte-exact, and stay open.
      const total = k * CHUNK;
      await until(
        () => states.every((s, i) => stalled.has(i) || s.bytes === total),
        20_000,
        'the readers got every byte',
      );
      states.forEach((s, i) => {
        if (!stalled.has(i)) {
          expect(s.ok).toBe(true);
          expect(servers[i]!.closed).toBe(false);
        }
      });
      // Later broadcasts skip the destroyed ones without an error.
      expect(f.reactor.broadcast(servers, 'x')).toMatchObject({ written: 4, skipped: 2 });
      expect(f.reactor.metrics().queue_limit_hits).toBe(2);

      // 'refuse': the stalled recipient is left out and listed, and stays open.
      const refusing = await room(2, { maxQueuedBytes: 256 * 1024, queueLimitPolicy: 'refuse' });
      refusing.clients[0]!.pause();
      refusing.servers[0]!.setSendBufferSize(8192);
      let refused: readonly Connection[] = [];
      const live = reader(refusing.clients[1]!);
      for (let j = 0; j < 2000 && refused.length === 0; j++) {
        refused = f.reactor.broadcast(refusing.servers, chunk(j)).refused;
        const sent = (j + 1) * CHUNK;
        await until(() => live.bytes === sent, 20_000, `the reader got chunk ${j + 1}`);
      }
      expect(refused).toEqual([refusing.servers[0]]);
      expect(refusing.servers[0]!.closed).toBe(false);
      expect(refusing.servers[0]!.writableLength).toBeLessThanOrEqual(256 * 1024);
    },
  );

  run('ended and closed recipients are skipped; misuse is a typed error', async () => {
    const { servers, clients } = await room(3);
    const states = clients.map(reader);
    servers[0]!.end();
    servers[1]!.destroy();
    const result = f.reactor.broadcast(servers, Buffer.from('only-the-third'));
    expect(result).toMatchObject({ written: 1, skipped: 2, failed: 0 });
    await until(() => states[2]!.bytes === 14);
    expect(states[0]!.bytes).toBe(0);
    // No write-after-end error for the ended one: a broadcast reaches whoever is still open.
    const errors: unknown[] = [];
    servers[0]!.on('error', (e) => errors.push(e));
    await sleep(20);
    expect(errors).toEqual([]);

    expect(() => f.reactor.broadcast(servers, 42 as unknown as string)).toThrow(
      expect.objectContaining({ code: 'IOMUX_INVALID_ARGUMENT' }) as Error,
    );
    expect(f.reactor.broadcast([], 'nobody')).toMatchObject({ written: 0, skipped: 0 });
    const other = reactorOn(backend.name);
    try {
      const listener = await other.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
      const foreign = await other.connect({ port: listener.port });
      expect(() => f.reactor.broadcast([servers[2]!, foreign], 'x')).toThrow(
        /recipient 1 \(connection \d+\) belongs to another reactor/,
      );
    } finally {
      await other.close();
    }
    await f.reactor.close();
    expect(() => f.reactor.broadcast(servers, 'x')).toThrow(
      expect.objectContaining({ code: 'IOMUX_REACTOR_CLOSED' }) as Error,
    );
  });
});
