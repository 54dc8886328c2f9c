// Functional check of c-http (run by `make check`, against the ASan/UBSan build): every request
// of a pipelined burst, of a request split across writes and of one with a body is answered once,
// in order, and refused input gets its status and a close. Exits 1 naming the first failed case.
//   node c-http-check.mjs [path to c-http]   (default build/c-http-asan)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const bin = process.argv[2] ?? fileURLToPath(new URL('./build/c-http-asan', import.meta.url));
const server = spawn(bin, ['--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (chunk) => {
    out += chunk;
    const m = /listening (\d+)/.exec(out);
    if (m) resolve(Number(m[1]));
  });
  server.once('exit', (code) => reject(new Error(`${bin} exited with ${code}: ${out}`)));
});

/**
 * Writes the chunks 20 ms apart; resolves with everything read once the server closes, or, when
 * `half` is set, once we ended our side and the server closed in turn.
 */
function exchange(chunks, { half = true } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(`no close from the server within 5 s; got ${JSON.stringify(out.slice(0, 80))}`),
      );
    }, 5000);
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => (out += d));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on('connect', async () => {
      for (const c of chunks) {
        socket.write(c);
        await new Promise((r) => setTimeout(r, 20));
      }
      if (half) setTimeout(() => socket.end(), 200);
    });
  });
}

const REQ = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
const hello =
  /HTTP\/1\.1 200 OK\r\nDate: [^\r]+ GMT\r\nContent-Type: text\/plain\r\nContent-Length: 13\r\n\r\nHello, World!/g;
const answers = (out) => {
  const all = out.match(hello) ?? [];
  assert.equal(all.join(''), out, 'nothing but whole hello responses');
  return all.length;
};

const cases = [
  ['one request', async () => assert.equal(answers(await exchange([REQ])), 1)],
  [
    '16 pipelined in one write',
    async () => assert.equal(answers(await exchange([REQ.repeat(16)])), 16),
  ],
  // More responses than one connection queues (64 KiB) at once, and more input than one read.
  [
    '3000 pipelined in one write',
    async () => assert.equal(answers(await exchange([REQ.repeat(3000)])), 3000),
  ],
  [
    'requests split across writes',
    async () => {
      const parts = [
        REQ.slice(0, 5),
        REQ.slice(5, 20),
        REQ.slice(20) + REQ.slice(0, 3),
        REQ.slice(3),
      ];
      assert.equal(answers(await exchange(parts)), 2);
    },
  ],
  [
    'a Content-Length body is skipped, not parsed as a request',
    async () => {
      const body = 'GET / HTTP/1.1\r\n\r\n'; // looks like a request: must not be answered
      const post = `POST / HTTP/1.1\r\ncontent-length: ${body.length}\r\n\r\n`;
      assert.equal(answers(await exchange([post + body.slice(0, 4), body.slice(4) + REQ])), 2);
    },
  ],
];
const refused = [
  ['Transfer-Encoding', 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n', 501],
  ['a bad Content-Length', 'GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n', 400],
  [
    'a body larger than the buffer',
    'GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n',
    413,
  ],
  ['a head larger than the buffer', `GET / HTTP/1.1\r\nX: ${'a'.repeat(20000)}`, 431],
];
for (const [what, input, status] of refused)
  cases.push([
    `${what} → ${status} and close`,
    async () => {
      const out = await exchange([REQ + input], { half: false });
      assert.equal(
        answers(out.slice(0, out.indexOf('HTTP/1.1 ', 1))),
        1,
        'the request before it is answered',
      );
      assert.match(
        out.slice(out.indexOf('HTTP/1.1 ', 1)),
        new RegExp(
          `^HTTP/1\\.1 ${status} [^\\r]+\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n$`,
        ),
      );
    },
  ]);

let failed = 0;
let passed = 0;
for (const [name, run] of cases) {
  try {
    await run();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}: ${String(err.message).split('\n')[0]}`);
  }
}
const exited = new Promise((resolve) =>
  server.once('exit', (code, signal) => resolve({ code, signal })),
);
server.kill('SIGTERM');
const { code, signal } = await exited;
if (code === 0) {
  passed += 1;
  console.log('ok   clean exit on SIGTERM');
} else {
  failed += 1;
  console.log(`FAIL clean exit on SIGTERM: code ${code}, signal ${signal}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
