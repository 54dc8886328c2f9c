// Client side of the non-echo workloads, run in a child process so the server under test has the
// core to itself as far as possible:
//   node clients.mjs churn PORT SECONDS PARALLEL   connect, echo 64 B, close, repeat; prints JSON
//   node clients.mjs idle PORT COUNT SOURCES       open COUNT idle connections, report, hold until stdin closes
import net from 'node:net';

const [mode, portText, a, b] = process.argv.slice(2);
const port = Number(portText);

function connectOnce(localAddress) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    socket.setNoDelay(true);
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

if (mode === 'churn') {
  const seconds = Number(a);
  const parallel = Number(b);
  const payload = Buffer.alloc(64, 'c');
  let done = 0;
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      try {
        const socket = await connectOnce(undefined);
        await new Promise((resolve, reject) => {
          let got = 0;
          socket.on('data', (d) => {
            got += d.length;
            if (got >= 64) {
              socket.destroy();
              resolve();
            }
          });
          socket.on('error', reject);
          socket.write(payload);
        });
        done += 1;
      } catch {
        errors += 1;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: parallel }, loop));
  const elapsed = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ connections: done, per_sec: done / elapsed, errors }));
} else if (mode === 'idle') {
  const count = Number(a);
  const sources = Number(b);
  const sockets = [];
  let errors = 0;
  for (let i = 0; i < count; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + 200); j += 1) {
      batch.push(
        connectOnce(`127.0.0.${1 + (j % sources)}`).then(
          (s) => sockets.push(s),
          () => (errors += 1),
        ),
      );
    }
    await Promise.all(batch);
  }
  console.log(JSON.stringify({ open: sockets.length, errors }));
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
} else {
  console.error('usage: clients.mjs churn|idle ...');
  process.exit(2);
}
