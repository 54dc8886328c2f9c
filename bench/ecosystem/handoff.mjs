// Handoff time for the ecosystem benchmark: `node handoff.mjs <moves>` with IOMUX_BACKEND set.
// A reactor in the main thread accepts connections; after a connection's first bytes it moves it
// with conn.transfer() to a reactor in a worker thread (same backend), which adopts the ticket and
// echoes. Each client streams 64 KiB of patterned bytes and checks every echoed byte, so a move
// that loses, duplicates or reorders a byte shows as ok: false. The time of a move is from the
// ticket's detachedAt (main thread) to adopt() resolving in the worker; eight connections move at
// a time, once the worker's reactor is up (its start-up is not a move). Prints one JSON line: { backend, moves, median_ms, p99_ms, max_ms, ok }.
import net from 'node:net';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import { createReactor } from '@iomux/core';

function echo(conn) {
  conn.on('data', (chunk) => {
    if (!conn.write(chunk)) {
      conn.pause();
      conn.once('drain', () => conn.resume());
    }
  });
}

if (!isMainThread) {
  const reactor = createReactor({ ioModel: 'auto' });
  parentPort.postMessage({ ready: true });
  parentPort.on('message', async (message) => {
    if (message === 'close') {
      await reactor.close();
      parentPort.postMessage({ closed: true });
      return;
    }
    const conn = await reactor.adopt(message);
    const ms = performance.timeOrigin + performance.now() - message.detachedAt;
    echo(conn);
    if (conn.isPaused) conn.resume();
    parentPort.postMessage({ ms });
  });
} else {
  const moves = Number(process.argv[2] ?? 100);
  const reactor = createReactor({ ioModel: 'auto' });
  const worker = new Worker(new URL(import.meta.url));
  const times = [];
  const ready = new Promise((resolve) => {
    worker.on('message', (message) => {
      if (message.ready) resolve();
      if (message.ms !== undefined) times.push(message.ms);
    });
  });
  await ready;
  const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (conn) => {
    echo(conn);
    conn.once('data', () => worker.postMessage(conn.transfer()));
  });
  const total = 64 * 1024;
  const payload = Buffer.alloc(total);
  for (let i = 0; i < total; i += 1) payload[i] = (i * 31 + (i >> 8)) & 0xff;
  const client = () =>
    new Promise((resolve) => {
      const socket = net.connect(listener.port, '127.0.0.1');
      let received = 0;
      let ok = true;
      socket.on('connect', () => socket.end(payload));
      socket.on('data', (chunk) => {
        if (!chunk.equals(payload.subarray(received, received + chunk.length))) ok = false;
        received += chunk.length;
      });
      socket.on('error', () => (ok = false));
      socket.on('close', () => resolve(ok && received === total));
    });
  let ok = true;
  for (let done = 0; done < moves; done += 8) {
    const results = await Promise.all(
      Array.from({ length: Math.min(8, moves - done) }, () => client()),
    );
    ok &&= results.every(Boolean);
  }
  const closed = new Promise((resolve) => worker.on('message', (m) => m.closed && resolve()));
  worker.postMessage('close');
  await closed;
  await worker.terminate();
  await reactor.close();
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  console.log(
    JSON.stringify({
      backend: reactor.backend,
      moves: times.length,
      median_ms: at(0.5),
      p99_ms: at(0.99),
      max_ms: sorted.at(-1) ?? 0,
      ok: ok && times.length === moves,
    }),
  );
}
