// The echo handler, shared by the server and the demo: write back what arrives, and stop reading
// while the peer is not taking our writes (backpressure).
export function echo(conn) {
  conn.on('data', (chunk) => {
    if (!conn.write(chunk)) {
      conn.pause();
      conn.once('drain', () => conn.resume());
    }
  });
}
