// reactor.adopt() on every backend: a node:http upgrade handed to iomux with its `head`, a
// net.Socket whose readable buffer node had already filled, an fd, and bad input; and the
// reverse, toNetSocket(conn). Every stream is compared byte for byte.
import { closeSync, openSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { IomuxError, toNetSocket } from '../src/index.js';
import { backends, echo, pattern, until } from './helpers.js';
import { reactorPerTest } from './reactor-per-test.js';

/** Reads from `socket` until `size` bytes after the first `skip` bytes arrived. */
function readBytes(socket: net.Socket, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let received = 0;
    socket.on('error', reject);
    socket.on('close', () => {
      reject(new Error(`closed after ${received} of ${size} bytes`));
    });
    socket.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      received += chunk.length;
      if (received >= size) resolve(Buffer.concat(parts));
    });
  });
}

const UPGRADE_RESPONSE =
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n';

describe.each(backends)('suite.reactor.adopt: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  const suite = reactorPerTest(backend);
  const { closers } = suite;

  async function listening(server: net.Server | http.Server): Promise<number> {
    closers.push(() => server.close());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }

  run('a node:http upgrade adopted with its head: 2 MiB echoed byte-exact', async () => {
    const heads: number[] = [];
    const server = http.createServer((_req, res) => res.end('no upgrade'));
    server.on('upgrade', (_req, socket: net.Socket, head: Buffer) => {
      heads.push(head.length);
      void suite.reactor.adopt(socket, { head }).then((conn) => {
        conn.write(UPGRADE_RESPONSE);
        echo(conn);
      });
    });
    const port = await listening(server);
    const payload = pattern(2 << 20, 51);
    const client = net.connect(port, '127.0.0.1');
    closers.push(() => client.destroy());
    // The request and the first payload bytes in one write: node's parser reads them together,
    // so part of the payload arrives as the upgrade's head.
    client.write(
      Buffer.concat([
        Buffer.from(
          'GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n',
        ),
        payload.subarray(0, 1000),
      ]),
    );
    const expected = Buffer.concat([Buffer.from(UPGRADE_RESPONSE), payload]);
    const received = readBytes(client, expected.length);
    await until(() => suite.reactor.connectionCount() === 1, 5000, 'the adoption');
    client.write(payload.subarray(1000));
    const got = await received;
    expect(heads[0]).toBeGreaterThan(0);
    expect(got.subarray(0, expected.length).equals(expected)).toBe(true);
    expect(got.length).toBe(expected.length);
    client.end();
    await until(() => suite.reactor.connectionCount() === 0, 5000, 'the connection to close');
  });

  run("bytes in node's readable buffer are delivered first, nothing lost", async () => {
    const payload = pattern(1 << 20, 52);
    let buffered = -1;
    const server = net.createServer((socket) => {
      // node reads ahead into the socket's buffer even while nobody consumes it.
      void until(() => socket.readableLength > 0, 5000, "node's read-ahead").then(async () => {
        buffered = socket.readableLength;
        echo(await suite.reactor.adopt(socket));
      });
    });
    const port = await listening(server);
    const client = net.connect(port, '127.0.0.1');
    closers.push(() => client.destroy());
    const received = readBytes(client, payload.length);
    client.write(payload);
    const got = await received;
    expect(buffered).toBeGreaterThan(0);
    expect(got.equals(payload)).toBe(true);
    client.end();
    await until(() => suite.reactor.connectionCount() === 0, 5000, 'the connection to close');
  });

  run('an fd (here from a transfer ticket) is adopted as a normal connection', async () => {
    const donor = suite.reactor;
    const listener = await donor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      // Only the fd and the bytes already read (blocking_io's reader thread reads ahead) are
      // passed on: the fd path with a head.
      const { fd, undelivered } = conn.transfer();
      void suite.reactor.adopt(fd, { head: undelivered }).then(echo);
    });
    const client = net.connect(listener.port, '127.0.0.1');
    closers.push(() => client.destroy());
    await new Promise((resolve) => client.once('connect', resolve));
    const payload = pattern(512 * 1024, 53);
    const received = readBytes(client, payload.length);
    client.write(payload);
    expect((await received).equals(payload)).toBe(true);
    expect(donor.stats().accepted).toBe(1);
    client.end();
    await until(() => suite.reactor.connectionCount() === 0, 5000, 'the connection to close');
  });

  run('bad input: typed errors, nothing adopted, no fd leaked', async () => {
    const attempt = async (source: unknown): Promise<IomuxError> => {
      const error = await suite.reactor.adopt(source as number).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(IomuxError);
      return error as IomuxError;
    };
    expect((await attempt(-1)).code).toBe('IOMUX_INVALID_ARGUMENT');
    expect((await attempt(1.5)).code).toBe('IOMUX_INVALID_ARGUMENT');
    expect((await attempt('socket')).code).toBe('IOMUX_INVALID_ARGUMENT');
    // A Duplex that is no socket (the type takes the Duplex node's 'upgrade' event gives).
    const notASocket = await attempt(new PassThrough());
    expect(notASocket.code).toBe('IOMUX_INVALID_ARGUMENT');
    expect(notASocket.message).toMatch(
      /expected a net\.Socket, an fd or a connection ticket, got a PassThrough/,
    );
    const file = openSync('/dev/null', 'r');
    try {
      expect((await attempt(file)).code).toBe('ENOTSOCK');
    } finally {
      closeSync(file);
    }
    // A listening socket is no connection.
    const server = net.createServer();
    await listening(server);
    const handle = (server as unknown as { _handle: { fd: number } })._handle;
    expect((await attempt(handle.fd)).code).toBe('EINVAL');
    // A socket that is not open any more.
    const closed = new net.Socket();
    expect((await attempt(closed)).code).toBe('IOMUX_INVALID_ARGUMENT');
    expect(suite.reactor.connectionCount()).toBe(0);
  });

  run('toNetSocket(conn): held and queued bytes carry over to node:net, byte-exact', async () => {
    const payload = pattern(1 << 20, 54);
    const handed: net.Socket[] = [];
    const listener = await suite.reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
      conn.pause(); // what arrives now is read later, by node
      conn.write('hello from iomux;');
      setTimeout(() => {
        const socket = toNetSocket(conn);
        handed.push(socket);
        closers.push(() => socket.destroy());
        socket.pipe(socket);
      }, 50);
    });
    const client = net.connect(listener.port, '127.0.0.1');
    closers.push(() => client.destroy());
    const expected = Buffer.concat([Buffer.from('hello from iomux;'), payload]);
    const received = readBytes(client, expected.length);
    client.write(payload);
    const got = await received;
    expect(got.equals(expected)).toBe(true);
    expect(handed).toHaveLength(1);
    expect(suite.reactor.connectionCount()).toBe(0);
    client.end();
    await new Promise((resolve) => handed[0]?.once('close', resolve));
  });
});
