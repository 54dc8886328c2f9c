/**
 * Which JS object owns each backend socket id, and how many sockets of each kind are open?
 * Backends reuse ids, so an object leaves the table by identity ({@link SocketTable.remove} with
 * the object), and every native call of a socket object first checks {@link SocketTable.owns}:
 * a stale object can never reach a socket that was handed to someone else.
 */

/** The kinds of socket a reactor tracks. */
export type SocketKind = 'connection' | 'listener' | 'udp' | 'pending';

/** A table entry: anything that can say which kind of socket it is. */
export interface TableEntry {
  /** The entry's kind, for the per-kind counts. */
  readonly socketKind: SocketKind;
}

/** id → owner, with per-kind counts kept in step. */
export class SocketTable<T extends TableEntry> {
  private readonly slots: (T | undefined)[] = [];
  private readonly counts: Record<SocketKind, number> = {
    connection: 0,
    listener: 0,
    udp: 0,
    pending: 0,
  };

  /** The owner of `id`, if any. */
  get(id: number): T | undefined {
    return this.slots[id];
  }

  /** True when `id` belongs to `entry`. */
  owns(id: number, entry: T): boolean {
    return this.slots[id] === entry;
  }

  /** Records `entry` as the owner of `id`; an earlier owner of a reused id is dropped first. */
  set(id: number, entry: T): void {
    const previous = this.slots[id];
    if (previous !== undefined) this.counts[previous.socketKind] -= 1;
    this.slots[id] = entry;
    this.counts[entry.socketKind] += 1;
  }

  /** Removes `entry` from `id`; false (and nothing changes) when `id` belongs to someone else. */
  remove(id: number, entry: T): boolean {
    if (this.slots[id] !== entry) return false;
    this.slots[id] = undefined;
    this.counts[entry.socketKind] -= 1;
    return true;
  }

  /** Open sockets of one kind. */
  count(kind: SocketKind): number {
    return this.counts[kind];
  }

  /** Open sockets of every kind. */
  total(): number {
    return this.counts.connection + this.counts.listener + this.counts.udp + this.counts.pending;
  }

  /** A snapshot of `[id, owner]` pairs, safe to iterate while entries are removed. */
  entries(): [number, T][] {
    const list: [number, T][] = [];
    for (const [id, entry] of this.slots.entries()) if (entry !== undefined) list.push([id, entry]);
    return list;
  }
}
