/**
 * How does a reactor close its sockets gracefully? {@link endAllSockets} closes listeners and UDP
 * sockets, rejects pending connects, ends every connection (queued writes are flushed first),
 * waits up to a timeout for them to close and destroys the rest.
 */
import type { NativeBackendHandle } from './backend.js';
import { Connection } from './connection.js';
import { IomuxError } from './errors.js';
import type { Slot } from './fallback.js';
import { Listener } from './listener.js';
import type { SocketTable } from './socket-table.js';
import { UdpSocket } from './udp.js';

/** What closing the sockets needs from the reactor. */
export interface ShutdownHost {
  /** The backend instance. */
  readonly native: NativeBackendHandle;
  /** id → socket object. */
  readonly table: SocketTable<Slot>;
  /** Refs or unrefs the backend's watcher after the table changed. */
  updateRef(): void;
  /** Calls `done` once no connection is left (or earlier, when the reactor fails). */
  whenIdle(done: () => void): void;
}

/** Ends every socket of `host`; connections still open after `timeoutMs` are destroyed. */
export async function endAllSockets(host: ShutdownHost, timeoutMs: number): Promise<void> {
  for (const [id, slot] of host.table.entries()) {
    if (slot instanceof Listener || slot instanceof UdpSocket) slot.close();
    else if (slot.socketKind === 'pending') {
      host.native.destroy(id);
      host.table.remove(id, slot);
      host.updateRef();
      slot.reject(
        new IomuxError(
          'IOMUX_REACTOR_CLOSED',
          'reactor closed before the connection was established',
        ),
      );
    }
  }
  for (const [, slot] of host.table.entries()) if (slot instanceof Connection) slot.endByReactor();
  if (host.table.count('connection') > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      host.whenIdle(done);
    });
  }
  for (const [, slot] of host.table.entries()) if (slot instanceof Connection) slot.destroy();
}
