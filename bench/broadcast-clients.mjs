// Child of bench/broadcast.mjs: opens --connections node:net sockets to --port on 127.0.0.1 and
// reads whatever arrives. IPC: {op:'bytes'} -> {bytes}: the total read so far; {op:'pause'} and
// {op:'resume'} stop and restart reading on every socket; {op:'exit'} closes everything.
import net from 'node:net';

const argv = process.argv.slice(2);
const flag = (name) => Number(argv[argv.indexOf(name) + 1]);
const port = flag('--port');
const connections = flag('--connections');

const sockets = [];
let bytes = 0;
let open = 0;
for (let i = 0; i < connections; i++) {
  const socket = net.connect({ port, host: '127.0.0.1' }, () => {
    open += 1;
    if (open === connections) process.send({ op: 'ready' });
  });
  socket.on('data', (data) => (bytes += data.length));
  socket.on('error', (err) => {
    process.send({ op: 'error', message: err.message });
  });
  sockets.push(socket);
}

process.on('message', (message) => {
  switch (message.op) {
    case 'bytes':
      process.send({ op: 'bytes', bytes });
      break;
    case 'pause':
      for (const s of sockets) s.pause();
      process.send({ op: 'paused' });
      break;
    case 'resume':
      for (const s of sockets) s.resume();
      process.send({ op: 'resumed' });
      break;
    case 'exit':
      for (const s of sockets) s.destroy();
      process.exit(0);
  }
});
