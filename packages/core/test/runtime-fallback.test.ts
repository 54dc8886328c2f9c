// Runtime fallback: the backend fails mid-stream and every socket moves to the fallback backend
// with no byte lost, duplicated or reordered.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  createReactor,
  type BackendName,
  type FallbackRecord,
  type IomuxError,
} from '../src/index.js';
import {
  backends,
  dgramPeer,
  echo,
  fallbackSkip,
  fdCount,
  numberedDatagram,
  sleep,
  streamClient,
  until,
} from './helpers.js';

// iocp → select is the Windows chain (run under Wine by pnpm check:iocp).
const pairs: ['epoll' | 'io_uring' | 'kqueue' | 'iocp', BackendName, number][] = [
  ['iocp', 'select', 300],
  ['epoll', 'select', 300],
  ['epoll', 'blocking_io', 1000],
  ['io_uring', 'select', 300],
  ['io_uring', 'blocking_io', 1000],
  ['kqueue', 'select', 300],
  ['kqueue', 'blocking_io', 1000],
];

describe.each(pairs)('runtime fallback %s → %s', (from, to, connections) => {
  const skip = fallbackSkip(from, to);

  it.skipIf(skip !== '')(
    `migrates ${connections} streaming connections with every byte verified${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const fdsBefore = fdCount();
      const perConnection = 64 * 1024;
      const reactor = createReactor(
        { ioModel: from, retry: { fallback: [to] } },
        { env: {}, faults: { afterBytes: { [from]: (connections * perConnection) / 4 } } },
      );
      expect(reactor.backend).toBe(from);
      const fallbacks: FallbackRecord[] = [];
      reactor.on('fallback', (record) => fallbacks.push(record));
      const connectionErrors: unknown[] = [];
      const listener = await reactor.listen(
        { host: '127.0.0.1', port: 0, backlog: 2048 },
        (conn) => {
          conn.on('close', (err) => err && connectionErrors.push(err));
          echo(conn);
        },
      );
      const started = performance.now();
      const results = await Promise.all(
        Array.from(
          { length: connections },
          (_, i) => streamClient(listener.port, i + 1, perConnection, { endWhenDone: true }).done,
        ),
      );
      const elapsed = performance.now() - started;
      expect(results.every((r) => r.ok && r.received === perConnection)).toBe(true);
      expect(connectionErrors).toEqual([]);
      expect(reactor.backend).toBe(to);
      expect(fallbacks).toHaveLength(1);
      const record = fallbacks[0]!;
      expect(record).toMatchObject({ backend: from, phase: 'runtime', cause: 'poll failed: EIO' });
      expect(record.migration?.to).toBe(to);
      expect(record.migration!.sockets).toBeGreaterThan(1); // the listener and live connections
      // Still serving after the move: a fresh connection is accepted on the new backend.
      const after = await streamClient(listener.port, 999, 1024, { endWhenDone: true }).done;
      expect(after.ok).toBe(true);
      console.log(
        `runtime fallback ${from} → ${to}: ${connections} connections, ${connections * perConnection} bytes verified, ` +
          `${record.migration!.sockets} sockets moved in ${record.migration!.ms.toFixed(2)} ms, run took ${elapsed.toFixed(0)} ms`,
      );
      await reactor.close();
      await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
    },
  );
});

describe('runtime fallback with no successor', () => {
  const epoll = backends.find((b) => b.name === 'epoll')!;
  it.skipIf(!epoll.available)(
    'closes every connection with IOMUX_BACKEND_FAILED and emits error',
    async () => {
      const reactor = createReactor(
        { ioModel: 'epoll', retry: { fallback: ['epoll'] } },
        { env: {}, faults: { pollAfter: { epoll: 3 }, pollErrno: 'EBADF' } },
      );
      const errors: { code?: string }[] = [];
      reactor.on('error', (err) => errors.push(err));
      let closedWith: { code?: string } | undefined;
      const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
        conn.on('close', (err) => (closedWith = err));
      });
      // One connection is accepted on the first poll; the two that follow make the third poll
      // and the failure, so a connection is open when the backend fails.
      const sockets: net.Socket[] = [];
      let accepted = false;
      for (let i = 0; i < 5 && errors.length === 0; i += 1) {
        const s = net.connect({ port: listener.port, host: '127.0.0.1' });
        s.on('error', () => undefined);
        sockets.push(s);
        await new Promise((r) => setTimeout(r, 20));
        accepted ||= reactor.connectionCount() > 0;
      }
      await until(() => errors.length === 1);
      expect(errors[0]).toMatchObject({ code: 'IOMUX_BACKEND_FAILED', errno: 9 });
      expect(accepted).toBe(true);
      await until(() => closedWith !== undefined, 5000, 'the open connection closed');
      expect(closedWith?.code).toBe('IOMUX_BACKEND_FAILED');
      expect(reactor.connectionCount()).toBe(0);
      for (const s of sockets) s.destroy();
      await reactor.close();
    },
  );
});

// io_uring accepts with a multishot operation: when the ring fails, connections the kernel already
// accepted sit in completions nobody announced yet (many of them with a CQ of 8 entries). They
// move with their listener (DetachedSocket::accepted) and are announced by the successor; before,
// they were closed and their clients saw the connection end unserved.
// iocp's AcceptEx calls are posted ahead the same way: accepts that completed but were not
// delivered when it fails move with the listener too (they were closed, and their clients reset).
const acceptingPairs: [string, 'io_uring' | 'iocp', Record<string, string>][] = [
  [
    'io_uring (tiny rings)',
    'io_uring',
    {
      IOMUX_IOURING_SQ_ENTRIES: '4',
      IOMUX_IOURING_CQ_ENTRIES: '8',
      IOMUX_IOURING_BUF_COUNT: '64',
    },
  ],
  ['iocp', 'iocp', {}],
];

describe.each(acceptingPairs)(
  'runtime fallback %s → select, connections accepting as it fails',
  (_title, from, env) => {
    const skip = fallbackSkip(from, 'select');

    it.skipIf(skip !== '')(
      `every connection accepted before or while the ${from === 'iocp' ? 'port' : 'ring'} fails is served${skip ? ` (skipped: ${skip})` : ''}`,
      async () => {
        const fdsBefore = fdCount();
        const connections = 200;
        const perConnection = 4096;
        const reactor = createReactor(
          { ioModel: from, retry: { fallback: ['select'] } },
          // Fails as soon as the first bytes arrive.
          { env, faults: { afterBytes: { [from]: 1 } } },
        );
        const fallbacks: FallbackRecord[] = [];
        reactor.on('fallback', (record) => fallbacks.push(record));
        const connectionErrors: unknown[] = [];
        let served = 0;
        const listener = await reactor.listen(
          { host: '127.0.0.1', port: 0, backlog: 1024 },
          (conn) => {
            served += 1;
            conn.on('close', (err) => err && connectionErrors.push(err));
            echo(conn);
          },
        );
        const results = await Promise.all(
          Array.from(
            { length: connections },
            (_, i) => streamClient(listener.port, i + 1, perConnection, { endWhenDone: true }).done,
          ),
        );
        expect(fallbacks).toHaveLength(1);
        expect(results.filter((r) => !(r.ok && r.received === perConnection))).toEqual([]);
        expect(connectionErrors).toEqual([]);
        expect(served).toBe(connections);
        await until(() => reactor.connectionCount() === 0, 5000, 'every connection closed');
        await reactor.close();
        await until(() => fdCount() <= fdsBefore, 5000, `fd count back to ${fdsBefore}`);
      },
    );
  },
);

/** Datagram `index` of the streams below: 64 to 463 bytes. */
function numbered(index: number): Buffer {
  return numberedDatagram(index, 64 + (index % 400));
}

/** Opens a UDP socket whose sends all wait in its queue until a poll (IOMUX_FAULT_UDP_QUEUE). */
async function queueingUdp(reactor: ReturnType<typeof createReactor>) {
  process.env.IOMUX_FAULT_UDP_QUEUE = '1';
  try {
    return await reactor.udp({ host: '127.0.0.1' });
  } finally {
    delete process.env.IOMUX_FAULT_UDP_QUEUE;
  }
}

// kqueue runs here as its emulated build (packages/native-kqueue/emulation); on macOS natively.
const udpBackends: BackendName[] = ['epoll', 'io_uring', 'kqueue', 'iocp', 'select', 'blocking_io'];
// blocking_io cannot be an io_model, only a fallback, so each reactor starts on `from` through the
// IOMUX_BACKEND override.
const udpPairs = udpBackends.flatMap((from) =>
  udpBackends.filter((to) => to !== from).map((to): [BackendName, BackendName] => [from, to]),
);

/** A reactor on `from` that polls only when asked, and whose first poll fails over to `to`. */
function failingAtFirstPoll(from: BackendName, to: BackendName): ReturnType<typeof createReactor> {
  const reactor = createReactor(
    { ioModel: 'auto', retry: { fallback: [to] } },
    { env: { IOMUX_BACKEND: from }, faults: { pollAfter: { [from]: 0 } } },
  );
  reactor.stop(); // nothing polls until pollEvents(): the first poll fails
  return reactor;
}

describe.each(udpPairs)('runtime fallback of a UDP socket %s → %s', (from, to) => {
  const skip = fallbackSkip(from, to);
  const title = (what: string): string => (skip ? `${what} (skipped: ${skip})` : what);

  it.skipIf(skip !== '')(title('carries queued datagrams over, in order'), async () => {
    const fdsBefore = fdCount();
    const reactor = failingAtFirstPoll(from, to);
    const target = await dgramPeer();
    const socket = await queueingUdp(reactor);
    const sent = Array.from({ length: 200 }, (_, i) => numbered(i));
    for (const d of sent) expect(socket.send(d, target.port, '127.0.0.1')).toBe(false);
    await sleep(30);
    expect(target.got).toHaveLength(0); // still queued in the old backend
    const fallbacks: FallbackRecord[] = [];
    reactor.on('fallback', (record) => fallbacks.push(record));
    await reactor.pollEvents(0);
    expect(reactor.backend).toBe(to);
    expect(fallbacks[0]?.migration).toMatchObject({ to, sockets: 1 });
    reactor.run();
    await until(() => target.got.length === sent.length, 5000, `200 (got ${target.got.length})`);
    target.got.forEach((d, i) => {
      expect(d.equals(sent[i]!)).toBe(true);
    });
    // Both directions work on the new backend.
    const got: Buffer[] = [];
    socket.on('message', (msg) => got.push(Buffer.from(msg)));
    target.socket.send('hello', socket.address().port, '127.0.0.1');
    socket.send('bye', target.port, '127.0.0.1');
    await until(() => got.length === 1 && target.got.length === sent.length + 1);
    expect(got[0]!.toString()).toBe('hello');
    expect(target.got.at(-1)!.toString()).toBe('bye');
    target.socket.close();
    await reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
  });

  // Windows has no UDP send threads (udp-send-thread.test.ts checks that it sends inline there).
  const threadSkip =
    skip || (process.platform === 'win32' ? 'Windows has no UDP send threads' : '');
  it.skipIf(threadSkip !== '')(
    `moves a send thread with the socket, its queue first${threadSkip ? ` (skipped: ${threadSkip})` : ''}`,
    async () => {
      const fdsBefore = fdCount();
      const reactor = failingAtFirstPoll(from, to);
      const target = await dgramPeer();
      const socket = await reactor.udp({ host: '127.0.0.1', sendThread: true });
      expect(socket.sendThread).toBe(true);
      const batch = (first: number) =>
        Array.from({ length: 200 }, (_, i) => ({ data: numbered(first + i), port: target.port }));
      // The old thread may still hold some of these at the detach: they go out before the next.
      socket.sendBatch(batch(0));
      await reactor.pollEvents(0);
      expect(reactor.backend).toBe(to);
      reactor.run();
      socket.sendBatch(batch(200));
      await until(() => target.got.length === 400, 5000, `400 (got ${target.got.length})`);
      target.got.forEach((d, i) => {
        expect(d.equals(numbered(i))).toBe(true);
      });
      // The successor's sends run on a thread as well: a refusal comes as an event, not a throw.
      const errors: IomuxError[] = [];
      socket.on('error', (err) => errors.push(err));
      expect(socket.send(Buffer.alloc(65_508), target.port, '127.0.0.1')).toBe(true);
      await until(() => errors.length === 1, 5000, 'the EMSGSIZE event');
      expect(errors[0]).toMatchObject({ code: 'EMSGSIZE' });
      target.socket.close();
      await reactor.close();
      await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
    },
  );

  it.skipIf(skip !== '')(title('keeps an echo stream flowing across the move'), async () => {
    const fdsBefore = fdCount();
    const phase = 300;
    let phaseBytes = 0;
    for (let i = 0; i < phase; i += 1) phaseBytes += numbered(i).length;
    // The first poll after the server read the whole first phase fails; its echoes of the last
    // datagrams are then still queued (every send is, with the fault switch) and move along.
    const reactor = createReactor(
      { ioModel: 'auto', retry: { fallback: [to] } },
      { env: { IOMUX_BACKEND: from }, faults: { afterBytes: { [from]: phaseBytes } } },
    );
    const fallbacks: FallbackRecord[] = [];
    reactor.on('fallback', (record) => fallbacks.push(record));
    const server = await queueingUdp(reactor);
    server.setRecvBufferSize(4 * 1024 * 1024);
    let received = 0;
    server.on('message', (msg, remote) => {
      received += 1;
      server.send(msg, remote.port, remote.address);
    });
    const client = await dgramPeer();
    const sendPhase = async (start: number): Promise<void> => {
      for (let i = start; i < start + phase; i += 1) {
        client.socket.send(numbered(i), server.address().port, '127.0.0.1');
        if (i % 50 === 49) await sleep(2);
      }
    };
    await sendPhase(0);
    await until(() => received === phase, 5000, `phase 1 (server got ${received})`);
    // blocking_io's writer sends on its own, so the failing poll may not have come yet.
    await reactor.pollEvents(0);
    expect(reactor.backend).toBe(to);
    await sendPhase(phase);
    const total = 2 * phase;
    await until(() => client.got.length >= total, 5000, `${total} echoes (${client.got.length})`);
    await sleep(20);
    expect(client.got).toHaveLength(total); // none lost, none twice
    client.got.forEach((d, i) => {
      expect(d.equals(numbered(i))).toBe(true);
    }); // in order
    expect(fallbacks).toHaveLength(1);
    expect(fallbacks[0]).toMatchObject({
      backend: from,
      phase: 'runtime',
      cause: 'poll failed: EIO',
    });
    client.socket.close();
    await reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
  });
});
