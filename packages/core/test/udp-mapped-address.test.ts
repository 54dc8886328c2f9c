// An IPv4 sender seen on a dual-stack UDP socket is reported as `::ffff:127.0.0.1`, as TCP and
// node:dgram report it, not as `::ffff:7f00:1` (issue 18, defect 12).
import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import type { RemoteInfo } from '../src/index.js';
import { backendTitle, backends, reactorOn, until } from './helpers.js';

describe.each(backends)('udp IPv4-mapped sender: $name', (backend) => {
  const run = backend.available ? it : it.skip;
  run(`${backendTitle(backend)}: prints the mapped address with a dotted tail`, async () => {
    const reactor = reactorOn(backend.name);
    const sender = dgram.createSocket('udp4');
    try {
      let socket;
      try {
        socket = await reactor.udp({ host: '::', port: 0 });
      } catch (err) {
        // A backend without UDP says so by name; every Linux backend has it.
        expect((err as { code?: string }).code).toBe('EOPNOTSUPP');
        return;
      }
      const from: RemoteInfo[] = [];
      socket.on('message', (_msg, info) => from.push(info));
      sender.send('hi', socket.address().port, '127.0.0.1');
      await until(() => from.length === 1, 5000, 'datagram');
      expect(from[0]).toMatchObject({ address: '::ffff:127.0.0.1', family: 'IPv6' });
      expect(from[0]!.port).toBe(sender.address().port);
    } finally {
      sender.close();
      await reactor.close();
    }
  });
});
