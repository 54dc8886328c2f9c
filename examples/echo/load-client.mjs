// Closed-loop echo load client for the demo, on its own iomux reactor in a worker thread: each
// connection sends `size` bytes, waits for all of them to come back, checks them, repeats.
import { parentPort, workerData } from 'node:worker_threads';
import { createReactor } from '@iomux/core';

const { port, connections, size, seconds } = workerData;
const reactor = createReactor({ ioModel: 'auto' });
const payload = Buffer.alloc(size, 'iomux-demo ');
let roundTrips = 0;
let mismatches = 0;
let errors = 0;
let running = true;
const started = performance.now();

async function drive() {
  const conn = await reactor.connect({ host: '127.0.0.1', port });
  let received = 0;
  conn.on('data', (chunk) => {
    for (let i = 0; i < chunk.length; i += 1) {
      if (chunk[i] !== payload[(received + i) % size]) mismatches += 1;
    }
    received += chunk.length;
    if (received < size) return;
    received = 0;
    roundTrips += 1;
    if (running) conn.write(payload);
    else conn.end();
  });
  conn.on('close', (err) => {
    if (err) errors += 1;
  });
  conn.write(payload);
}

await Promise.all(Array.from({ length: connections }, () => drive().catch(() => (errors += 1))));
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
running = false;
const elapsed = (performance.now() - started) / 1000;
await reactor.close();
parentPort.postMessage({ roundTrips, mismatches, errors, seconds: elapsed });
