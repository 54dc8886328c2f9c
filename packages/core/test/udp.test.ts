import dgram from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Reactor, RemoteInfo } from '../src/index.js';
import { backends, fdCount, pattern, reactorOn, until } from './helpers.js';

// Datagram support is part of the readiness engine (epoll, select); the others say EOPNOTSUPP.
const withUdp = new Set(['epoll', 'select']);

describe.each(backends)('udp: $name', (backend) => {
  const runs = backend.available && withUdp.has(backend.name);
  let reactor: Reactor;
  let fdsBefore = 0;

  beforeEach(() => {
    if (!backend.available) return;
    fdsBefore = fdCount();
    reactor = reactorOn(backend.name);
  });
  afterEach(async () => {
    if (!backend.available) return;
    await reactor.close();
    await until(() => fdCount() <= fdsBefore, 5000, 'fds released');
  });

  it.runIf(backend.available && !withUdp.has(backend.name))(
    `reports EOPNOTSUPP on ${backend.name}`,
    async () => {
      await expect(reactor.udp({ host: '127.0.0.1' })).rejects.toMatchObject({
        code: 'EOPNOTSUPP',
      });
    },
  );

  it.runIf(runs)('delivers 2000 datagrams intact with the sender address, batched', async () => {
    const socket = await reactor.udp({ host: '127.0.0.1', port: 0 });
    socket.setRecvBufferSize(4 * 1024 * 1024);
    const port = socket.address().port;
    const got = new Map<number, Buffer>();
    let from: RemoteInfo | undefined;
    socket.on('message', (msg, remote) => {
      got.set(msg.readUInt32BE(0), Buffer.from(msg));
      from = remote;
    });
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
    const total = 2000;
    for (let i = 0; i < total; i += 1) {
      const payload = pattern(200 + (i % 300), i + 1);
      payload.writeUInt32BE(i, 0);
      client.send(payload, port, '127.0.0.1');
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 2)); // bursts the receive buffer holds
    }
    await until(() => got.size === total, 10_000, `${total} datagrams (got ${got.size})`);
    for (let i = 0; i < total; i += 1) {
      const payload = pattern(200 + (i % 300), i + 1);
      payload.writeUInt32BE(i, 0);
      expect(got.get(i)?.equals(payload)).toBe(true);
    }
    expect(from).toMatchObject({
      address: '127.0.0.1',
      port: client.address().port,
      family: 'IPv4',
      truncated: false,
    });
    // recvmmsg: fewer batches than datagrams
    expect(reactor.metrics().polls).toBeLessThan(total);
    client.close();
    socket.close();
  });

  it.runIf(runs)('sends and echoes, reports truncation, and connects', async () => {
    const server = await reactor.udp({ host: '127.0.0.1', maxDatagram: 100 });
    const truncated: RemoteInfo[] = [];
    server.on('message', (msg, remote) => {
      if (remote.truncated) truncated.push(remote);
      else server.send(msg, remote.port, remote.address);
    });
    const client = await reactor.udp({ host: '127.0.0.1' });
    client.connect(server.address().port, '127.0.0.1');
    const replies: Buffer[] = [];
    client.on('message', (msg) => replies.push(Buffer.from(msg)));
    expect(client.send('ping')).toBe(true);
    client.send(Buffer.alloc(500, 7));
    await until(() => replies.length === 1 && truncated.length === 1);
    expect(replies[0]!.toString()).toBe('ping');
    expect(truncated[0]!.size).toBe(100);
    expect(() => client.send('x', 1234, 'localhost')).toThrow(
      expect.objectContaining({ code: 'IOMUX_INVALID_ARGUMENT' }) as Error,
    );
    client.setBroadcast(true);
    client.setMulticastTTL(2);
    client.addMembership('239.1.2.3');
    client.dropMembership('239.1.2.3');
    expect(() => {
      client.addMembership('not-an-ip');
    }).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });
});
