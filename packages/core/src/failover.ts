/**
 * What happens when the backend's poll fails while serving? {@link failOver} opens the next
 * backend of the fallback chain and moves every socket to it ({@link migrateSockets}); a socket
 * the successor cannot take is closed with the adopt error. When no backend can take over, every
 * socket is closed with the failure and the reactor becomes unusable.
 */
import type { NativeBackendHandle } from './backend.js';
import type { Candidate, FallbackRecord, OpenedBackend } from './backend-open.js';
import type { BackendName, ResolvedConfig } from './config.js';
import { Connection } from './connection.js';
import { IomuxError, errnoName } from './errors.js';
import { migrateSockets, type Slot } from './fallback.js';
import { Listener } from './listener.js';
import { channels } from './metrics.js';
import type { Logger } from './reactor-options.js';
import type { SocketTable } from './socket-table.js';
import { UdpSocket } from './udp.js';
import { guarded } from './user-code.js';

/** What a runtime fallback needs from its reactor. */
export interface FailoverHost {
  /** Backend in use (the failed one, on entry). */
  readonly backend: BackendName;
  /** The failed backend's instance, on entry. */
  readonly native: NativeBackendHandle;
  /** id → socket object of the failed backend. */
  readonly table: SocketTable<Slot>;
  /** The reactor's configuration (its fallback chain). */
  readonly config: ResolvedConfig;
  /** Every fallback so far; this one is appended. */
  readonly fallbackHistory: FallbackRecord[];
  /** The user's logger, if any. */
  readonly logger: Logger | undefined;
  /** Opens the first usable backend of `chain` with the reactor's settings and event callback. */
  openSuccessor(chain: readonly Candidate[]): OpenedBackend;
  /** Makes `opened` the reactor's backend with `table` as its socket table, and restarts it. */
  switchTo(opened: OpenedBackend, table: SocketTable<Slot>): void;
  /** Keeps a replaced backend's counters, so totals survive the switch. */
  retire(old: NativeBackendHandle): void;
  /** No backend could take over: the reactor becomes unusable with `error`. */
  failed(error: IomuxError): void;
  /** Emits the `fallback` event. */
  announceFallback(record: FallbackRecord): void;
  /** Refs or unrefs the backend's watcher after the table changed. */
  updateRef(): void;
  /** Announces connection `id` (already in the backend) as accepted by listener `listenerId`. */
  announceAccepted(id: number, listenerId: number): void;
}

/**
 * The backend's poll failed with `errno`. Every listener, connection and pending connect moves to
 * the next backend of the fallback chain with its fd, flags, unsent bytes and any bytes the old
 * backend had read but not delivered; users see one `fallback` event.
 */
export function failOver(host: FailoverHost, errno: number): void {
  const old = host.native;
  const failed = host.backend;
  // The failed engine is never started again; its watcher is released (natively, when its
  // poll failed) before the successor opens, and the handle is closed right after the move.
  old.stop();
  const cause = pollFailureCause(failed, errno);
  const record: FallbackRecord = {
    backend: failed,
    attempt: 1,
    cause,
    at: Date.now(),
    phase: 'runtime',
  };
  host.fallbackHistory.push(record);
  host.logger?.warn({ backend: failed, cause }, 'iomux backend failed while serving, migrating');
  const chain = host.config.retry.fallback
    .filter(
      (name) =>
        name !== failed &&
        !host.fallbackHistory.some((r) => r.backend === name && r.phase === 'runtime'),
    )
    .map((name) => ({ name, attempts: 1 }));
  let opened: OpenedBackend;
  try {
    opened = host.openSuccessor(chain);
  } catch (err) {
    failAll(host, old, errno, err);
    return;
  }
  host.fallbackHistory.push(...opened.history);
  const started = performance.now();
  const migration = migrateSockets(
    host.table,
    old,
    opened.handle,
    opened.addon.events,
    (id, slot, error) => {
      lose(host, id, slot, error);
    },
    (id, listenerId) => {
      host.announceAccepted(id, listenerId);
    },
  );
  host.retire(old);
  old.close();
  host.switchTo(opened, migration.table);
  record.migration = {
    to: opened.name,
    sockets: migration.moved,
    lost: migration.lost,
    ms: performance.now() - started,
  };
  host.logger?.warn(
    { from: failed, to: opened.name, sockets: migration.moved, lost: migration.lost },
    'iomux runtime fallback done',
  );
  if (channels.fallback.hasSubscribers) channels.fallback.publish(record);
  host.announceFallback(record);
  for (const followUp of migration.followUps) guarded(followUp);
}

/**
 * What a poll failure means, for the fallback record and the log. io_uring's EPERM is its
 * credentials check: the process's uid or gid changed after the ring was created.
 */
function pollFailureCause(backend: string, errno: number): string {
  const name = errnoName(errno);
  if (backend === 'io_uring' && name === 'EPERM') {
    return (
      'poll failed: EPERM (the process uid/gid changed after the io_uring ring was created; ' +
      'a ring keeps the credentials it was created with, CVE-2024-22017)'
    );
  }
  return `poll failed: ${name}`;
}

/**
 * No backend could take over: every socket is closed with the failure, the failed engine is
 * closed, and from now on listen()/connect()/udp() reject with `IOMUX_BACKEND_FAILED`.
 */
function failAll(
  host: FailoverHost,
  old: NativeBackendHandle,
  errno: number,
  cause: unknown,
): void {
  const error = new IomuxError(
    'IOMUX_BACKEND_FAILED',
    `backend ${host.backend} failed (${pollFailureCause(host.backend, errno)}) and no fallback could take over`,
    { errno, syscall: 'poll', cause },
  );
  for (const [id, slot] of host.table.entries()) {
    old.destroy(id);
    lose(host, id, slot, error);
  }
  host.retire(old);
  old.close();
  host.failed(error);
}

/** Closes a socket that cannot go on, through the current table (by object). */
function lose(host: FailoverHost, id: number, slot: Slot, error: IomuxError): void {
  if (slot instanceof Connection) slot.lost(error);
  else if (slot instanceof Listener || slot instanceof UdpSocket) slot.close();
  else {
    host.table.remove(id, slot);
    host.updateRef();
    guarded(() => {
      slot.reject(error);
    });
  }
}
