// A queued flush that the kernel refuses (ENOBUFS) closes the connection with a reset, not a FIN:
// the engine's own failure path (readiness fail(), blocking_io's writer) must not let the peer
// take a stream cut short for a complete one. A child process serves one big write under
// native/test/fault_shim.c with IOMUX_FAULT_SENDS_FROM=2, so the JS try-write (each socket's first
// send) goes through and the fault hits the first flush of the queue by the engine itself.
import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useFaultShim } from './shim.js';
import { backends, backendTitle, reactorOn, sleep, until } from '../helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'fixtures/flush-fail-child.mjs');
const BYTES = 2 * 1024 * 1024;

const scratch = useFaultShim('iomux-flush-fail-');

/** Why a backend cannot run this test here, or '' when it can. */
function skipReason(b: (typeof backends)[number]): string {
  if (!b.available) return backendTitle(b);
  // Its queue goes out as ring SENDMSG operations, which an LD_PRELOAD shim cannot fault.
  if (b.name === 'io_uring') return 'io_uring flushes through the ring, out of the shim’s reach';
  return '';
}

describe.each(backends)('a refused queue flush resets the peer: $name', (backend) => {
  const skip = skipReason(backend);
  it.skipIf(skip !== '')(
    `the peer gets ECONNRESET, not a clean end of a truncated stream${skip ? ` (skipped: ${skip})` : ''}`,
    async () => {
      const gate = path.join(scratch.workDir, `${backend.name}.gate`);
      const proc = fork(child, [backend.name, String(BYTES)], {
        env: {
          ...process.env,
          LD_PRELOAD: scratch.shim,
          IOMUX_FAULT_KINDS: 'enobufs',
          IOMUX_FAULT_RATE: '100',
          IOMUX_FAULT_FATAL_MAX: '1',
          IOMUX_FAULT_SENDS_FROM: '2',
          IOMUX_FAULT_GATE: gate,
        },
        stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
      });
      const lines: Record<string, unknown>[] = [];
      let out = '';
      proc.stdout!.setEncoding('utf8');
      proc.stdout!.on('data', (chunk: string) => {
        out += chunk;
        const parts = out.split('\n');
        out = parts.pop()!;
        for (const line of parts) lines.push(JSON.parse(line) as Record<string, unknown>);
      });
      try {
        await until(() => lines.length > 0, 10_000, 'the child listening');
        const { port, backend: serving } = lines[0] as { port: number; backend: string };
        expect(serving).toBe(backend.name);
        writeFileSync(gate, ''); // faults from here on: only this connection's sends
        // The reading side is an iomux connection: node:net's libuv takes a POLLHUP right after
        // a short read for the end of the stream without reading again (uv__stream_io), so a
        // node:net client can report this very reset as a clean 'end'.
        const client = reactorOn('epoll');
        try {
          const result = { received: 0, intact: true, ended: false, error: '', closed: false };
          const conn = await client.connect({ host: '127.0.0.1', port });
          conn.pause(); // the server's try-write fills the buffers; the rest waits in its queue
          conn.write('go');
          conn.on('data', (data: Buffer) => {
            for (let i = 0; i < data.length; i++)
              if (data[i] !== ((result.received + i) * 7) % 256) result.intact = false;
            result.received += data.length;
          });
          conn.on('end', () => (result.ended = true));
          conn.on('close', (err) => {
            result.closed = true;
            result.error = err?.code ?? '';
          });
          await sleep(300);
          conn.resume(); // writable again: the engine flushes, and its first flush is refused
          await until(() => result.closed, 10_000, 'the client connection to close');
          await until(() => lines.length > 1, 10_000, "the server's 'close'");
          expect(lines[1]).toEqual({ closed: 'ENOBUFS' });
          expect(result.intact).toBe(true);
          expect(result.received).toBeLessThan(BYTES);
          // The point: a reset, so the client cannot take the truncated stream for a whole one.
          expect(result.error).toBe('ECONNRESET');
          expect(result.ended).toBe(false);
        } finally {
          await client.close();
        }
      } finally {
        proc.send('exit');
        await new Promise((resolve) => proc.once('exit', resolve));
      }
    },
  );
});
