// A raw HTTP/1.1 client for the tests: writes bytes as given and parses responses incrementally
// (status line, headers, Content-Length body; HEAD and 1xx responses have none).
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export class RawClient {
  readonly socket: net.Socket;
  /** Resolves when the server closes or half-closes the connection. */
  readonly ended: Promise<void>;
  private buffered = Buffer.alloc(0);
  private readonly queue: RawResponse[] = [];
  private waiter: (() => void) | undefined;
  private isEnded = false;
  private expectHead: boolean[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    this.ended = new Promise((resolve) => {
      socket.on('end', () => {
        this.isEnded = true;
        this.wake();
        resolve();
      });
      socket.on('close', () => {
        this.isEnded = true;
        this.wake();
        resolve();
      });
    });
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.parse();
      this.wake();
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => {
        resolve(new RawClient(socket));
      });
      socket.once('error', reject);
    });
  }

  /** Sends raw bytes as one write. */
  send(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(data, (err) => {
        if (err) reject(err);
        else resolve();
      });
    });
  }

  /** The next response, waiting up to `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<RawResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const response = this.queue.shift();
      if (response !== undefined) return response;
      if (this.isEnded) throw new Error('connection ended before a response');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a response');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The next `n` responses. */
  async take(n: number, timeoutMs = 10_000): Promise<RawResponse[]> {
    const out: RawResponse[] = [];
    for (let i = 0; i < n; i += 1) out.push(await this.next(timeoutMs));
    return out;
  }

  /** Marks the next response (in order) as the answer to a HEAD: it carries no body. */
  nextIsHead(): void {
    this.expectHead.push(true);
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  private parse(): void {
    for (;;) {
      const end = this.buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      const lines = this.buffered.toString('latin1', 0, end).split('\r\n');
      const status = Number((lines[0] ?? '').split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const head = status < 200 ? false : (this.expectHead[0] ?? false);
      const length = status < 200 || head ? 0 : Number(headers['content-length'] ?? 0);
      if (this.buffered.length < end + 4 + length) return;
      const body = Buffer.from(this.buffered.subarray(end + 4, end + 4 + length));
      this.buffered = this.buffered.subarray(end + 4 + length);
      if (status >= 200) this.expectHead.shift();
      this.queue.push({ status, headers, body });
    }
  }
}
