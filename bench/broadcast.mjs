// The broadcast section of `pnpm bench` (issue #22): 1 KiB to 1000 recipients with
// reactor.broadcast() against a loop of conn.write(), with a Buffer and with a string payload.
//   node bench/broadcast.mjs [--quick] [--rounds N] [--backends epoll,io_uring]
// One server process per backend (`--server BACKEND`, run with --expose-gc) holds the reactor;
// its 1000 node:net readers are a child process (bench/broadcast-clients.mjs). Per round and
// variant (interleaved): the wall time of the calls, and the JS heap allocated by them (heap used
// after minus before, with a young generation large enough that no GC runs in between), then a
// wait until every byte arrived. Then the readers stop reading and each variant queues 512 KiB
// per recipient: the growth of the server's RSS shows what the native queues cost.
import { fork, spawn } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { fmt, median, spreadOf } from './stats.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const RECIPIENTS = 1000;
const SIZE = 1024;
/** Calls per stalled variant: 512 KiB per recipient, most of it past the kernel's buffers. */
const STALLED_CALLS = 512;
const VARIANTS = [
  'write() loop, Buffer',
  'broadcast(), Buffer',
  'write() loop, string',
  'broadcast(), string',
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs the section: one server process per backend. Resolves with { rows, stalled }. */
export async function runBroadcastBench({ quick, rounds, backends }) {
  const rows = [];
  const stalled = [];
  for (const backend of backends.filter((b) => b === 'epoll' || b === 'io_uring')) {
    const result = await serverProcess(backend, quick, rounds);
    rows.push(...result.rows);
    stalled.push(...result.stalled);
  }
  return { recipients: RECIPIENTS, size: SIZE, rows, stalled };
}

function serverProcess(backend, quick, rounds) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--expose-gc',
        '--max-semi-space-size=64',
        fileURLToPath(import.meta.url),
        '--server',
        backend,
        '--rounds',
        String(rounds),
        ...(quick ? ['--quick'] : []),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop();
      if (code !== 0)
        reject(new Error(`broadcast bench server (${backend}) exited ${code}: ${out}`));
      else resolve(JSON.parse(last));
    });
  });
}

/** The server side: a reactor on `backend`, 1000 readers, every variant measured. */
async function serve(backend, quick, rounds) {
  const { createReactor } = await import('@iomux/core');
  const reactor = createReactor({ io_model: backend });
  const connections = [];
  const listener = await reactor.listen({ host: '127.0.0.1', port: 0 }, (c) => connections.push(c));
  const clients = fork(`${here}broadcast-clients.mjs`, [
    '--port',
    String(listener.port),
    '--connections',
    String(RECIPIENTS),
  ]);
  const replies = [];
  clients.on('message', (m) => {
    if (m.op === 'error') throw new Error(`reader: ${m.message}`);
    replies.push(m);
  });
  const reply = async (op) => {
    while (!replies.some((m) => m.op === op)) await sleep(1);
    return replies.splice(
      replies.findIndex((m) => m.op === op),
      1,
    )[0];
  };
  const ask = async (op) => {
    clients.send({ op });
    return reply(op === 'bytes' ? 'bytes' : `${op}d`);
  };
  await reply('ready');
  while (connections.length < RECIPIENTS) await sleep(5);

  const buffer = Buffer.alloc(SIZE, 'b');
  const text = 'b'.repeat(SIZE);
  const send = {
    'write() loop, Buffer': () => {
      for (const c of connections) c.write(buffer);
    },
    'broadcast(), Buffer': () => reactor.broadcast(connections, buffer),
    'write() loop, string': () => {
      for (const c of connections) c.write(text);
    },
    'broadcast(), string': () => reactor.broadcast(connections, text),
  };
  const calls = quick ? 50 : 100;
  let expected = 0;
  // Warm-up: every variant runs until optimized before anything is measured.
  for (const variant of VARIANTS) for (let k = 0; k < 20; k++) send[variant]();
  expected += VARIANTS.length * 20 * RECIPIENTS * SIZE;
  while ((await ask('bytes')).bytes < expected) await sleep(2);
  const samples = Object.fromEntries(VARIANTS.map((v) => [v, { us: [], heap: [] }]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < VARIANTS.length; i++) {
      const variant = VARIANTS[(i + round) % VARIANTS.length];
      globalThis.gc();
      const heapBefore = v8.getHeapStatistics().used_heap_size;
      const start = process.hrtime.bigint();
      for (let k = 0; k < calls; k++) send[variant]();
      const elapsed = Number(process.hrtime.bigint() - start) / 1000;
      const heap = v8.getHeapStatistics().used_heap_size - heapBefore;
      expected += calls * RECIPIENTS * SIZE;
      while ((await ask('bytes')).bytes < expected) await sleep(2);
      samples[variant].us.push(elapsed / calls);
      samples[variant].heap.push(heap / calls);
    }
  }
  const rows = VARIANTS.map((variant) => {
    const { us, heap } = samples[variant];
    return {
      backend,
      variant,
      us_per_call: median(us),
      ...spreadOf('us_per_call', us),
      heap_bytes_per_call: median(heap),
      ...spreadOf('heap_bytes_per_call', heap),
    };
  });

  // Stalled readers: what about 512 KiB queued per recipient costs the server's memory.
  const stalled = [];
  // Small kernel send buffers, so most of it waits in the native queues.
  for (const c of connections) c.setSendBufferSize(4096);
  // broadcast() first: freed queue memory that the allocator keeps would hide a later growth.
  for (const variant of ['broadcast(), Buffer', 'write() loop, Buffer']) {
    await ask('pause');
    globalThis.gc();
    await sleep(200);
    const rssBefore = process.memoryUsage().rss;
    for (let k = 0; k < STALLED_CALLS; k++) send[variant]();
    const queued = connections.reduce((sum, c) => sum + c.writableLength, 0);
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    expected += STALLED_CALLS * RECIPIENTS * SIZE;
    await ask('resume');
    while ((await ask('bytes')).bytes < expected) await sleep(5);
    stalled.push({ backend, variant, queued_bytes: queued, rss_growth_bytes: rssGrowth });
  }
  clients.send({ op: 'exit' });
  await reactor.close();
  return { rows, stalled };
}

const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

export function renderBroadcastMarkdown({ recipients, size, rows, stalled }) {
  const lines = [
    `## Broadcast: ${size} B to ${recipients} recipients`,
    '',
    'Per call: wall time of one broadcast (or one loop of `write()` over every recipient), median',
    'with the range of rounds, and the JS heap it allocated (no GC in between). The readers read',
    'everything; the wait for it is not timed.',
    '',
    '| backend | variant | µs per call | spread | heap bytes per call | spread |',
    '|---|---|---:|---|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.backend} | ${r.variant} | ${r.us_per_call.toFixed(0)} | ${r.us_per_call_min.toFixed(0)}–${r.us_per_call_max.toFixed(0)} | ${fmt(r.heap_bytes_per_call)} | ${fmt(r.heap_bytes_per_call_min)}–${fmt(r.heap_bytes_per_call_max)} |`,
    ),
    '',
    `Stalled readers (they stop reading; ${STALLED_CALLS} calls of 1 KiB each, 4 KiB kernel send buffers): server RSS growth against the`,
    'bytes the queues hold.',
    '',
    '| backend | variant | queued | RSS growth |',
    '|---|---|---:|---:|',
    ...stalled.map(
      (s) =>
        `| ${s.backend} | ${s.variant} | ${mib(s.queued_bytes)} | ${mib(s.rss_growth_bytes)} |`,
    ),
  ];
  return lines.join('\n');
}

const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const quick = argv.includes('--quick');
  const rounds = Number(flag('--rounds', quick ? 1 : 3));
  if (argv.includes('--server')) {
    const result = await serve(flag('--server'), quick, rounds);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  } else {
    const { listBackends } = await import('@iomux/core');
    const available = listBackends()
      .filter((b) => b.available)
      .map((b) => b.name);
    const backends = flag('--backends', undefined)?.split(',') ?? available;
    const result = await runBroadcastBench({ quick, rounds, backends });
    const markdown = renderBroadcastMarkdown(result);
    mkdirSync(`${here}results`, { recursive: true });
    writeFileSync(`${here}results/broadcast.json`, JSON.stringify(result, null, 2));
    writeFileSync(`${here}results/broadcast.md`, `# iomux broadcast benchmark\n\n${markdown}\n`);
    console.log(`${markdown}\n\nreport: bench/results/broadcast.md (+ .json)`);
  }
}
