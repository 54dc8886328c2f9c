// A worker thread that ends while its reactor has I/O in flight must end alone: terminate() and
// process.exit() land in the middle of streaming, and the main thread keeps serving afterwards.
// Worker threads load plain JavaScript, so the worker uses the built package (dist).
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { backendTitle, backends, netRoundTrip, pattern, sleep } from './helpers.js';

const fixture = new URL('./fixtures/streaming-exit-worker.mjs', import.meta.url);
const core = new URL('../dist/index.js', import.meta.url).href;
const EXITS_PER_KIND = 10;
const nativeCallChild = fileURLToPath(
  new URL('./fixtures/native-call-teardown.mjs', import.meta.url),
);
const NATIVE_CALL_EXITS = 40;

function ignoreRejection(): void {
  // the worker was ended on purpose
}

function startStreamingWorker(backend: string): {
  worker: Worker;
  loaded: Promise<void>;
  streaming: Promise<void>;
} {
  const worker = new Worker(fixture, { workerData: { backend, core } });
  const reached = (what: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      worker.on('message', (message) => {
        if (message === what) resolve();
      });
      worker.once('error', reject);
      worker.once('exit', (code) => {
        reject(new Error(`worker exited with ${code} before '${what}'`));
      });
    });
  const loaded = reached('loaded');
  loaded.catch(ignoreRejection); // awaited only by the start-up case; the others await streaming
  return { worker, loaded, streaming: reached('streaming') };
}

function exited(worker: Worker): Promise<number> {
  return new Promise((resolve) => worker.once('exit', resolve));
}

/** A node:net echo server on the main thread: the proof that the process is alive and serving. */
async function mainThreadServes(): Promise<void> {
  const server = net.createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  try {
    const payload = pattern(64 * 1024, 7);
    expect((await netRoundTrip(port, payload)).equals(payload)).toBe(true);
  } finally {
    await new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
  }
}

describe.each(backends)('worker exit with I/O in flight: $name', (backend) => {
  const run = backend.available ? it : it.skip;

  run(`terminate() ${EXITS_PER_KIND} times while streaming: ${backendTitle(backend)}`, async () => {
    for (let i = 0; i < EXITS_PER_KIND; i += 1) {
      const { worker, streaming } = startStreamingWorker(backend.name);
      const done = exited(worker);
      await streaming;
      // Spread the moment over the first milliseconds of streaming.
      await sleep(i % 5);
      await worker.terminate();
      await done;
    }
    await mainThreadServes();
  });

  run(
    `process.exit() ${EXITS_PER_KIND} times while streaming: ${backendTitle(backend)}`,
    async () => {
      for (let i = 0; i < EXITS_PER_KIND; i += 1) {
        const { worker, streaming } = startStreamingWorker(backend.name);
        const done = exited(worker);
        await streaming;
        await sleep(i % 5);
        worker.postMessage('exit');
        expect(await done).toBe(3);
      }
      await mainThreadServes();
    },
  );

  run(`terminate() during start-up, before the first byte: ${backendTitle(backend)}`, async () => {
    for (let i = 0; i < EXITS_PER_KIND; i += 1) {
      const { worker, loaded, streaming } = startStreamingWorker(backend.name);
      // Terminated before it streams: its 'streaming' promise rejects by design.
      streaming.catch(ignoreRejection);
      // A worker terminated inside Node's module loader leaves the loader's open files behind
      // (Node's behaviour, not the reactor's): terminate once the modules are in, while the
      // reactor opens its backend, listens and connects.
      await loaded;
      await sleep(i * 3);
      await worker.terminate();
    }
    await mainThreadServes();
  });
  // A terminate() that lands inside a native method leaves N-API unable to run JS: an argument
  // read through a coercion (ToBoolean, ToNumber, Array::Get) then came back empty, and using it
  // was a fatal error that aborted the whole process. In a child, so that an abort is reported.
  run(
    `terminate() ${NATIVE_CALL_EXITS} times inside a loop of native calls: ${backendTitle(backend)}`,
    () => {
      const child = spawnSync(
        process.execPath,
        [nativeCallChild, core, backend.name, String(NATIVE_CALL_EXITS)],
        { encoding: 'utf8', timeout: 60_000 },
      );
      expect(child.stderr).not.toMatch(/FATAL ERROR/);
      expect(child.signal, child.stderr).toBeNull();
      expect(child.status, child.stderr).toBe(0);
      expect(JSON.parse(child.stdout.trim())).toEqual({ terminated: NATIVE_CALL_EXITS });
    },
    90_000,
  );
});
