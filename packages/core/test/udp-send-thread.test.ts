// UDP sockets whose sends run on a thread of their own (UdpOptions.sendThread), on every backend
// that runs here: order and completeness, errors as events, the thread's lifetime, and the
// counters. A backend that cannot run is skipped by name with its cause. The queue's bound and
// the stop/save/restore path are native/test/datagram_sender_test.cc's (under ASan and TSan).
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type IomuxError } from '../src/index.js';
import { backends, dgramPeer, numberedDatagram, sleep, thrown, until } from './helpers.js';
import { reactorPerTest } from './reactor-per-test.js';

/** The process's threads (Linux): a send thread is one more. */
function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

/** How many of the process's threads are named `name` (Linux). */
function threadsNamed(name: string): number {
  return readdirSync('/proc/self/task').filter((task) => {
    try {
      return readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim() === name;
    } catch {
      return false; // ended meanwhile
    }
  }).length;
}

const onLinux = process.platform === 'linux';

describe.each(backends)('udp send thread: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  // After each test the fd count is back: the thread's duplicate of the socket and its stop
  // signal are closed with it.
  const f = reactorPerTest(backend);

  run('is granted on every POSIX backend, and is one thread from open to close', async () => {
    // blocking_io runs threads of its own for every socket: a send thread is one more than that.
    const threadsBefore = onLinux ? threadCount() : 0;
    const inline = await f.reactor.udp({ host: '127.0.0.1' });
    expect(inline.sendThread).toBe(false);
    const perSocket = onLinux ? threadCount() - threadsBefore : 0;
    const socket = await f.reactor.udp({ host: '127.0.0.1', sendThread: true });
    expect(socket.sendThread).toBe(process.platform !== 'win32');
    if (onLinux) expect(threadCount()).toBe(threadsBefore + 2 * perSocket + 1);
    // Named by the thread itself once it runs, so top and perf can tell it.
    if (onLinux) await until(() => threadsNamed('iomux-udp-send') === 1, 2000, 'the named thread');
    socket.close();
    const joined = threadsBefore + perSocket;
    if (onLinux) await until(() => threadCount() === joined, 2000, 'the thread joined');
    if (onLinux) expect(threadsNamed('iomux-udp-send')).toBe(0);
  });

  run('sends 3000 datagrams from sendBatch and send, complete and in order', async () => {
    const target = await dgramPeer();
    f.closers.push(() => target.socket.close());
    const socket = await f.reactor.udp({ host: '127.0.0.1', sendThread: true });
    const before = f.reactor.stats().bytesWritten;
    const sent = Array.from({ length: 3000 }, (_, i) => numberedDatagram(i, 64 + (i % 500)));
    for (let start = 0; start < sent.length; start += 100) {
      const batch = sent.slice(start, start + 100);
      if (start % 1000 === 500) {
        for (const d of batch) socket.send(d, target.port, '127.0.0.1');
      } else {
        socket.sendBatch(batch.map((data) => ({ data, port: target.port })));
      }
      // The callers' buffers may change at once: the thread sends copies.
      for (const d of batch) d.fill(0, 4);
      await sleep(1); // bursts the peer's 8 MiB receive buffer holds
    }
    await until(() => target.got.length === sent.length, 10_000, `3000 (${target.got.length})`);
    target.got.forEach((d, i) => {
      const expected = numberedDatagram(i, 64 + (i % 500));
      expect(d.equals(expected)).toBe(true);
    });
    const bytes = sent.reduce((n, d) => n + d.length, 0);
    expect(f.reactor.stats().bytesWritten - before).toBe(bytes);
  });

  run("reports what the kernel refuses as an 'error' event, and goes on sending", async () => {
    const target = await dgramPeer();
    f.closers.push(() => target.socket.close());
    const inline = await f.reactor.udp({ host: '127.0.0.1' });
    const tooLong = Buffer.alloc(65_508); // over IPv4's 65507-byte payload limit
    expect(thrown(() => inline.send(tooLong, target.port, '127.0.0.1'))).toMatchObject({
      code: 'EMSGSIZE',
      typed: true,
    });
    const socket = await f.reactor.udp({ host: '127.0.0.1', sendThread: true });
    if (!socket.sendThread) return; // Windows: the inline case above is the whole behaviour
    const errors: IomuxError[] = [];
    socket.on('error', (err) => errors.push(err));
    expect(socket.send(tooLong, target.port, '127.0.0.1')).toBe(true); // taken by the thread
    socket.send('after', target.port, '127.0.0.1');
    await until(() => errors.length === 1 && target.got.length === 1, 5000, 'error and datagram');
    expect(errors[0]).toMatchObject({ code: 'EMSGSIZE' });
    expect(target.got[0]!.toString()).toBe('after');
  });

  run('checks its option and its payloads before the thread sees them', async () => {
    await expect(
      f.reactor.udp({ host: '127.0.0.1', sendThread: 'yes' as unknown as boolean }),
    ).rejects.toMatchObject({
      code: 'IOMUX_INVALID_ARGUMENT',
      message: 'udp: sendThread must be a boolean, got string',
    });
    const socket = await f.reactor.udp({ host: '127.0.0.1', sendThread: true });
    expect(thrown(() => socket.sendBatch([{ data: 7 as unknown as Uint8Array, port: 9 }]))).toEqual(
      {
        code: 'IOMUX_INVALID_ARGUMENT',
        message: 'sendBatch: datagrams[0].data must be a Uint8Array or a string, got number',
        typed: true,
      },
    );
    socket.close();
    expect(thrown(() => socket.send('x', 9))).toMatchObject({ code: 'IOMUX_SOCKET_CLOSED' });
  });
});
