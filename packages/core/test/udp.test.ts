// UDP on every backend that runs here: the same tests, each ending with every fd released. A
// backend that cannot run is skipped by name with its cause.
import dgram from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createReactor,
  type BackendName,
  type Reactor,
  type ReactorOptions,
  type RemoteInfo,
  type UdpSocket,
} from '../src/index.js';
import {
  backendTitle,
  backends,
  dgramPeer,
  fdCount,
  numberedDatagram as numbered,
  pattern,
  reactorOn,
  sleep,
  until,
} from './helpers.js';

function sendAll(socket: dgram.Socket, datagrams: Buffer[], port: number): Promise<void> {
  return Promise.all(
    datagrams.map(
      (d) =>
        new Promise<void>((resolve, reject) => {
          socket.send(d, port, '127.0.0.1', (err) => {
            if (err) reject(err);
            else resolve();
          });
        }),
    ),
  ).then(() => undefined);
}

/** Runs fn with IOMUX_FAULT_UDP_QUEUE=1: sockets opened meanwhile queue every datagram they send. */
async function withQueuedSends<T>(fn: () => Promise<T>): Promise<T> {
  process.env.IOMUX_FAULT_UDP_QUEUE = '1';
  try {
    return await fn();
  } finally {
    delete process.env.IOMUX_FAULT_UDP_QUEUE;
  }
}

describe.each(backends)('udp: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  let reactor: Reactor;
  let fdsBefore = 0;
  const extraReactors: Reactor[] = [];
  const peers: dgram.Socket[] = [];

  /** Another reactor on this backend with its own sizes; closed after the test. */
  function reactorWith(maxEvents: number, options: ReactorOptions): Reactor {
    const name: BackendName = backend.name;
    const r = createReactor(
      { ioModel: 'auto', maxEvents, retry: { fallback: [name] } },
      { ...options, env: { IOMUX_BACKEND: name } },
    );
    extraReactors.push(r);
    expect(r.backend).toBe(name);
    return r;
  }

  async function openPeer(): Promise<Awaited<ReturnType<typeof dgramPeer>>> {
    const p = await dgramPeer();
    peers.push(p.socket);
    return p;
  }

  beforeEach(() => {
    if (!backend.available) return;
    fdsBefore = fdCount();
    reactor = reactorOn(backend.name);
  });

  afterEach(async () => {
    if (!backend.available) return;
    for (const p of peers.splice(0)) p.close();
    for (const r of extraReactors.splice(0)) await r.close();
    await reactor.close();
    // Every socket, and for blocking_io every thread holding one, is gone.
    await until(
      () => fdCount() <= fdsBefore,
      5000,
      `fd count back to ${fdsBefore} (now ${fdCount()})`,
    );
  });

  it(`runs here: ${backendTitle(backend)}`, () => {
    if (!backend.available) expect(backend.cause).not.toBe('');
  });

  run('a second bind to a port in use is EADDRINUSE, as node:dgram', async () => {
    const first = await reactor.udp({ host: '127.0.0.1', port: 0 });
    const port = first.address().port;
    await expect(reactor.udp({ host: '127.0.0.1', port })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
    // Address reuse asked for by only the newcomer does not take the port either.
    await expect(reactor.udp({ host: '127.0.0.1', port, reuseAddr: true })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
    // The port is still the first socket's: a datagram sent to it arrives there.
    const got: Buffer[] = [];
    first.on('message', (msg) => got.push(Buffer.from(msg)));
    const client = await openPeer();
    client.socket.send(Buffer.from('still mine'), port, '127.0.0.1');
    await until(() => got.length === 1, 5000, 'the datagram on the first socket');
    expect(got[0]!.toString()).toBe('still mine');
  });

  run('reuseAddr on both sockets lets them share a port', async () => {
    const first = await reactor.udp({ host: '127.0.0.1', port: 0, reuseAddr: true });
    const port = first.address().port;
    const second = await reactor.udp({ host: '127.0.0.1', port, reuseAddr: true });
    expect(second.address().port).toBe(port);
  });

  run('delivers 2000 datagrams intact with the sender address, in fewer polls', async () => {
    const socket = await reactor.udp({ host: '127.0.0.1', port: 0 });
    socket.setRecvBufferSize(4 * 1024 * 1024);
    const port = socket.address().port;
    const got = new Map<number, Buffer>();
    let from: RemoteInfo | undefined;
    socket.on('message', (msg, remote) => {
      got.set(msg.readUInt32BE(0), Buffer.from(msg));
      from = remote;
    });
    const client = await openPeer();
    const total = 2000;
    for (let i = 0; i < total; i += 1) {
      client.socket.send(numbered(i, 200 + (i % 300)), port, '127.0.0.1');
      if (i % 50 === 49) await sleep(2); // bursts the receive buffer holds
    }
    await until(() => got.size === total, 10_000, `${total} datagrams (got ${got.size})`);
    for (let i = 0; i < total; i += 1) {
      expect(got.get(i)?.equals(numbered(i, 200 + (i % 300)))).toBe(true);
    }
    expect(from).toMatchObject({
      address: '127.0.0.1',
      port: client.port,
      family: 'IPv4',
      truncated: false,
    });
    // recvmmsg: many datagrams per poll
    expect(reactor.metrics().polls).toBeLessThan(total);
    expect(reactor.metrics().bytes_in).toBeGreaterThanOrEqual(total * 200);
  });

  run('drains a backlog larger than a batch and the slab with no new arrivals', async () => {
    // 64 events and a 16 KiB slab: 300 datagrams of up to 1000 bytes need many polls, and nothing
    // arrives meanwhile to wake the backend again (io_uring's poll reports arrivals, not levels).
    const small = reactorWith(64, { readChunk: 1024, slabBytes: 16 * 1024 });
    small.stop();
    const socket = await small.udp({ host: '127.0.0.1', maxDatagram: 1000 });
    socket.setRecvBufferSize(4 * 1024 * 1024);
    const got: Buffer[] = [];
    socket.on('message', (msg) => got.push(Buffer.from(msg)));
    const client = await openPeer();
    const total = 300;
    const sent = Array.from({ length: total }, (_, i) => numbered(i, 100 + ((i * 37) % 900)));
    await sendAll(client.socket, sent, socket.address().port);
    await sleep(20);
    small.run();
    await until(() => got.length === total, 10_000, `${total} datagrams (got ${got.length})`);
    got.forEach((d, i) => {
      expect(d.equals(sent[i]!)).toBe(true);
    }); // in order, each once
    expect(small.metrics().polls).toBeGreaterThanOrEqual(10);
  });

  run('sendBatch() sends 2500 datagrams to several peers in order, in batches', async () => {
    const socket = await reactor.udp({ host: '127.0.0.1' });
    socket.setSendBufferSize(8 * 1024 * 1024);
    const peersHere = [await openPeer(), await openPeer(), await openPeer()];
    const total = 2500; // more than one native call (1024 each)
    const sent = Array.from({ length: total }, (_, i) => numbered(i, 100 + (i % 200)));
    const datagrams = sent.map((data, i) => ({
      data,
      port: peersHere[i % 3]!.port,
      address: '127.0.0.1',
    }));
    const bytesBefore = reactor.metrics().bytes_out;
    expect(socket.sendBatch(datagrams)).toBe(true);
    for (const [k, peer] of peersHere.entries()) {
      const mine = sent.filter((_, i) => i % 3 === k);
      await until(() => peer.got.length === mine.length, 10_000, `peer ${k}: ${mine.length}`);
      peer.got.forEach((d, j) => {
        expect(d.equals(mine[j]!)).toBe(true);
      });
    }
    expect(reactor.metrics().bytes_out - bytesBefore).toBe(sent.reduce((n, d) => n + d.length, 0));
    // To the connected peer, and strings.
    const connected = await reactor.udp({ host: '127.0.0.1' });
    connected.connect(peersHere[0]!.port);
    const before = peersHere[0]!.got.length;
    expect(connected.sendBatch([{ data: 'a' }, { data: Buffer.from('b') }])).toBe(true);
    await until(() => peersHere[0]!.got.length === before + 2);
    expect(peersHere[0]!.got.slice(before).map(String)).toEqual(['a', 'b']);
  });

  run('names each sender by its own address, again and again', async () => {
    const socket = await reactor.udp({ host: '0.0.0.0' });
    const port = socket.address().port;
    const from: string[] = [];
    socket.on('message', (msg, remote) => from.push(`${msg.toString()}@${remote.address}`));
    const senders = await Promise.all(
      ['127.0.0.1', '127.0.0.2', '127.0.0.3'].map(async (address) => {
        const s = dgram.createSocket('udp4');
        peers.push(s);
        await new Promise<void>((resolve) => s.bind(0, address, resolve));
        return { s, address };
      }),
    );
    // One at a time, so the order is known: each sender three times over.
    for (let i = 0; i < 9; i += 1) {
      const { s, address } = senders[i % 3]!;
      s.send(address, port, '127.0.0.1');
      await until(() => from.length === i + 1, 5000, `datagram ${i}`);
    }
    expect(from).toEqual(
      Array.from({ length: 9 }, (_, i) => {
        const a = senders[i % 3]!.address;
        return `${a}@${a}`;
      }),
    );
  });

  run('sendBatch() checks every address and payload before sending any', async () => {
    const socket = await reactor.udp({ host: '127.0.0.1' });
    const peer = await openPeer();
    const bad = [
      { data: 'one', port: peer.port, address: '127.0.0.1' },
      { data: 'two', port: peer.port, address: 'localhost' },
    ];
    expect(() => socket.sendBatch(bad)).toThrow(/UDP send needs an IP address, got localhost/);
    expect(() => socket.sendBatch([{ data: 'x', port: 70_000 }])).toThrow(
      expect.objectContaining({ code: 'IOMUX_INVALID_ARGUMENT' }) as Error,
    );
    const notBytes = [
      { data: 'one', port: peer.port, address: '127.0.0.1' },
      { data: 42 as unknown as string, port: peer.port, address: '127.0.0.1' },
    ];
    expect(() => socket.sendBatch(notBytes)).toThrow(
      /sendBatch: datagrams\[1\]\.data must be a Uint8Array or a string, got number/,
    );
    expect(() =>
      socket.send(new ArrayBuffer(4) as unknown as string, peer.port, '127.0.0.1'),
    ).toThrow(/send: data must be a Uint8Array or a string, got ArrayBuffer/);
    expect(socket.sendBatch([])).toBe(true);
    await sleep(30);
    expect(peer.got).toHaveLength(0);
    socket.close();
    expect(() => socket.sendBatch([{ data: 'x', port: peer.port }])).toThrow(
      expect.objectContaining({ code: 'IOMUX_SOCKET_CLOSED' }) as Error,
    );
  });

  run('sendBatch() queues what the socket does not take and reports a full queue', async () => {
    await withQueuedSends(async () => {
      const socket = await reactor.udp({ host: '127.0.0.1' });
      const peer = await openPeer();
      const big = Buffer.alloc(60_000, 7);
      const datagrams = Array.from({ length: 20 }, () => ({ data: big, port: peer.port }));
      // The 1 MiB queue holds 17 of them: the 18th is refused with ENOBUFS and named.
      expect(() => socket.sendBatch(datagrams)).toThrow(/ENOBUFS.*datagram 17 of 20/);
      await until(
        () => peer.got.length === 17,
        10_000,
        `17 queued datagrams (got ${peer.got.length})`,
      );
    });
  });

  run('pause() leaves datagrams in the kernel; resume() delivers them in order', async () => {
    const socket = await reactor.udp({ host: '127.0.0.1' });
    socket.setRecvBufferSize(4 * 1024 * 1024);
    const got: Buffer[] = [];
    socket.on('message', (msg) => got.push(Buffer.from(msg)));
    socket.pause();
    const client = await openPeer();
    const sent = Array.from({ length: 100 }, (_, i) => numbered(i, 64 + i));
    await sendAll(client.socket, sent, socket.address().port);
    await sleep(50);
    expect(got).toHaveLength(0);
    // Sending goes on while paused.
    expect(socket.send('still sending', client.port, '127.0.0.1')).toBe(true);
    socket.resume();
    await until(() => got.length === sent.length, 5000, `100 datagrams (got ${got.length})`);
    got.forEach((d, i) => {
      expect(d.equals(sent[i]!)).toBe(true);
    });
    await until(() => client.got.length === 1);
    expect(client.got[0]!.toString()).toBe('still sending');
  });

  run('echoes, reports truncation with the first maxDatagram bytes, and connects', async () => {
    const server = await reactor.udp({ host: '127.0.0.1', maxDatagram: 100 });
    const truncated: { msg: Buffer; remote: RemoteInfo }[] = [];
    server.on('message', (msg, remote) => {
      if (remote.truncated) truncated.push({ msg: Buffer.from(msg), remote });
      else server.send(msg, remote.port, remote.address);
    });
    const client = await reactor.udp({ host: '127.0.0.1' });
    client.connect(server.address().port, '127.0.0.1');
    const replies: Buffer[] = [];
    client.on('message', (msg) => replies.push(Buffer.from(msg)));
    expect(client.send('ping')).toBe(true);
    const long = pattern(500, 7);
    client.send(long);
    await until(() => replies.length === 1 && truncated.length === 1);
    expect(replies[0]!.toString()).toBe('ping');
    expect(truncated[0]!.remote.size).toBe(100);
    expect(truncated[0]!.msg.equals(long.subarray(0, 100))).toBe(true);
    expect(() => client.send('x', 1234, 'localhost')).toThrow(
      expect.objectContaining({ code: 'IOMUX_INVALID_ARGUMENT' }) as Error,
    );
    // A connected socket hears only its peer.
    const stranger = await openPeer();
    stranger.socket.send('not for you', client.address().port, '127.0.0.1');
    client.send('pong');
    await until(() => replies.length === 2);
    await sleep(20);
    expect(replies.map(String)).toEqual(['ping', 'pong']);
  });

  run("reports an ICMP port unreachable as 'error' and keeps working", async () => {
    const closedPort = await openPeer();
    const port = closedPort.port;
    closedPort.socket.close();
    peers.splice(peers.indexOf(closedPort.socket), 1);
    const socket = await reactor.udp({ host: '127.0.0.1' });
    const errors: { code?: string }[] = [];
    socket.on('error', (err) => errors.push(err));
    socket.connect(port, '127.0.0.1');
    socket.send('anyone?');
    await until(() => errors.length > 0, 5000, 'ECONNREFUSED');
    expect(errors[0]).toMatchObject({ code: 'ECONNREFUSED' });
    const other = await openPeer();
    socket.connect(other.port, '127.0.0.1');
    socket.send('still here');
    await until(() => other.got.length === 1);
    expect(other.got[0]!.toString()).toBe('still here');
  });

  run('broadcast: EACCES until setBroadcast(true), then delivered', async () => {
    const receiver = await reactor.udp({ host: '0.0.0.0' });
    const got: Buffer[] = [];
    receiver.on('message', (msg) => got.push(Buffer.from(msg)));
    const sender = await reactor.udp({ host: '127.0.0.1' });
    const port = receiver.address().port;
    // 127.255.255.255 is the loopback network's broadcast address: it never leaves the host.
    expect(() => sender.send('all', port, '127.255.255.255')).toThrow(
      expect.objectContaining({ code: 'EACCES' }) as Error,
    );
    sender.setBroadcast(true);
    sender.setTTL(64);
    sender.send('all', port, '127.255.255.255');
    await until(() => got.length === 1);
    expect(got[0]!.toString()).toBe('all');
  });

  run('multicast: options apply; a joined group hears its datagram looped back', async (ctx) => {
    const receiver = await reactor.udp({ host: '0.0.0.0' });
    const got: Buffer[] = [];
    receiver.on('message', (msg) => got.push(Buffer.from(msg)));
    const sender = await reactor.udp({ host: '0.0.0.0' });
    sender.setMulticastTTL(1);
    sender.setMulticastLoopback(true);
    expect(() => {
      sender.addMembership('not-an-ip');
    }).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    try {
      receiver.addMembership('239.1.2.3');
      sender.send('group', receiver.address().port, '239.1.2.3');
    } catch (err) {
      // A host without a multicast-capable route (no default route) cannot take part.
      const code = (err as { code?: string }).code;
      if (code === 'ENODEV' || code === 'ENETUNREACH') ctx.skip(`no multicast route: ${code}`);
      throw err;
    }
    await until(() => got.length === 1);
    expect(got[0]!.toString()).toBe('group');
    receiver.dropMembership('239.1.2.3');
  });

  run('queued sends go out in order, flushed in batches', async () => {
    const target = await openPeer();
    const socket = await withQueuedSends(() => reactor.udp({ host: '127.0.0.1' }));
    const sent = Array.from({ length: 500 }, (_, i) => numbered(i, 32 + (i % 200)));
    for (const d of sent) expect(socket.send(d, target.port, '127.0.0.1')).toBe(false);
    await until(() => target.got.length === sent.length, 5000, `500 (got ${target.got.length})`);
    target.got.forEach((d, i) => {
      expect(d.equals(sent[i]!)).toBe(true);
    });
    expect(reactor.metrics().writes_queued).toBeGreaterThanOrEqual(sent.length);
    // A datagram the kernel refuses while queued is reported, and the rest still go out.
    const errors: { code?: string }[] = [];
    socket.on('error', (err) => errors.push(err));
    socket.send('refused', target.port, '127.255.255.255'); // no SO_BROADCAST: EACCES on flush
    socket.send('after', target.port, '127.0.0.1');
    await until(() => errors.length === 1 && target.got.length === sent.length + 1);
    expect(errors[0]).toMatchObject({ code: 'EACCES' });
    expect(target.got.at(-1)!.toString()).toBe('after');
  });

  run('bounds the send queue: ENOBUFS past 1 MiB, every accepted datagram delivered', async () => {
    const target = await openPeer();
    const socket = await withQueuedSends(() => reactor.udp({ host: '127.0.0.1' }));
    let accepted = 0;
    let refused: { code?: string } | undefined;
    for (; accepted < 200; accepted += 1) {
      try {
        socket.send(numbered(accepted, 60_000), target.port, '127.0.0.1');
      } catch (err) {
        refused = err as { code?: string };
        break;
      }
    }
    expect(refused).toMatchObject({ code: 'ENOBUFS' });
    expect(accepted).toBe(17); // 17 × 60000 bytes fit in 1 MiB, 18 do not
    await until(() => target.got.length === accepted, 5000, `${accepted} datagrams`);
    target.got.forEach((d, i) => {
      expect(d.equals(numbered(i, 60_000))).toBe(true);
    });
    // The queue drained: sending works again.
    socket.send('again', target.port, '127.0.0.1');
    await until(() => target.got.length === accepted + 1);
  });

  run('close() releases the socket even with datagrams queued and a reader blocked', async () => {
    const target = await openPeer();
    const sockets: UdpSocket[] = [];
    for (let i = 0; i < 8; i += 1) {
      sockets.push(await withQueuedSends(() => reactor.udp({ host: '127.0.0.1' })));
    }
    const closed: number[] = [];
    sockets.forEach((s, i) => {
      s.on('close', () => closed.push(i));
      s.send(pattern(1000, i), target.port, '127.0.0.1');
      s.close();
    });
    expect(() => sockets[0]!.send('late', target.port, '127.0.0.1')).toThrow(
      expect.objectContaining({ code: 'IOMUX_SOCKET_CLOSED' }) as Error,
    );
    await until(() => closed.length === sockets.length);
    // Reactor-level close with sockets still open is checked by afterEach (fds back to before).
    await reactor.udp({ host: '127.0.0.1' });
  });
});
