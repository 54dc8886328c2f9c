/**
 * How does `for await (const chunk of conn)` read a connection? {@link readChunks} yields each
 * chunk as it arrives, keeping reading paused while the loop body runs (backpressure: the kernel
 * and then the peer hold further data), returns at the peer's FIN and throws the error the
 * connection closed with. Leaving the loop early (break, throw) destroys the connection, as
 * node's readable streams do.
 */
import type { Connection } from './connection.js';
import type { IomuxError } from './errors.js';

/** The chunks of `conn`, in order, read only while the consumer waits for the next one. */
export async function* readChunks(conn: Connection): AsyncGenerator<Buffer, void, undefined> {
  const chunks: Buffer[] = [];
  let ended = conn.readableEnded;
  let failure: IomuxError | undefined;
  let wake: (() => void) | undefined;
  const onData = (chunk: Buffer): void => {
    chunks.push(conn.keepable(chunk));
    conn.pause(); // the rest of the batch waits, in order, until the consumer asks again
    wake?.();
  };
  const onEnd = (): void => {
    ended = true;
    wake?.();
  };
  const onClose = (error: IomuxError | undefined): void => {
    failure = error;
    ended = true;
    wake?.();
  };
  conn.on('data', onData);
  conn.on('end', onEnd);
  conn.on('close', onClose);
  let finished = false;
  try {
    for (;;) {
      const chunk = chunks.shift();
      if (chunk !== undefined) {
        yield chunk;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended || (conn.closed && conn.error === undefined)) break;
      if (conn.closed) throw conn.error!;
      await new Promise<void>((resolve) => {
        wake = resolve;
        conn.resume(); // may deliver held chunks at once, which wake us
      });
      wake = undefined;
    }
    finished = true;
  } finally {
    conn.off('data', onData);
    conn.off('end', onEnd);
    conn.off('close', onClose);
    if (!finished && !conn.closed) conn.destroy();
  }
}
