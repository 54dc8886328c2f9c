// The key space: a table of key → { key, value, expiresAt } (key-table.mjs). Keys are the request
// bytes read as latin1 (one char per byte, so any binary key works); the hot commands look them up
// by those bytes in place (lookupBytes, setBytes), so a key already stored costs no string. Expiry
// is enforced two ways, like Redis: lazily, when a command touches an expired key, and by
// `sweep()`, which a timer calls to drop expired keys nobody touches, using a min-heap of
// deadlines so each sweep only looks at due keys.

import { KeyTable, latin1 } from './key-table.mjs';

/** @typedef {import('node:buffer').Buffer} Buffer */

/**
 * @typedef {object} Entry
 * @property {string} key
 * @property {Buffer} value
 * @property {number} expiresAt ms since the epoch; 0 for no expiry
 */

export class Store {
  constructor() {
    /** @type {KeyTable<Entry>} */
    this.table = new KeyTable();
    /** Keys that have an expiry. */
    this.volatile = 0;
    /** Min-heap of [expiresAt, key]; entries whose key changed since are skipped when popped. */
    /** @type {[number, string][]} */
    this.heap = [];
    this.expiredKeys = 0;
  }

  get size() {
    return this.table.size;
  }

  /**
   * The live entry of `key`, dropping it first if it has expired.
   * @param {string} key
   * @param {number} now
   */
  lookup(key, now) {
    return this.live(this.table.get(key), now);
  }

  /**
   * lookup() of the key whose bytes are `buf[start, end)`.
   * @param {Buffer} buf
   * @param {number} start
   * @param {number} end
   * @param {number} now
   */
  lookupBytes(buf, start, end, now) {
    return this.live(this.table.getBytes(buf, start, end), now);
  }

  /**
   * `entry`, or undefined when there is none or it has expired (it is then dropped).
   * @param {Entry | undefined} entry
   * @param {number} now
   */
  live(entry, now) {
    if (entry === undefined) return undefined;
    if (entry.expiresAt !== 0 && entry.expiresAt <= now) {
      this.remove(entry.key, entry);
      this.expiredKeys += 1;
      return undefined;
    }
    return entry;
  }

  /**
   * @param {string} key
   * @param {Buffer} value
   * @param {number} expiresAt ms since the epoch, or 0
   */
  set(key, value, expiresAt) {
    this.store(this.table.get(key), key, value, expiresAt);
  }

  /**
   * set() of the key whose bytes are `buf[start, end)`: its string is made only if it is new.
   * @param {Buffer} buf
   * @param {number} start
   * @param {number} end
   * @param {Buffer} value
   * @param {number} expiresAt ms since the epoch, or 0
   */
  setBytes(buf, start, end, value, expiresAt) {
    const old = this.table.getBytes(buf, start, end);
    this.store(old, old === undefined ? latin1(buf, start, end) : old.key, value, expiresAt);
  }

  /**
   * @param {Entry | undefined} old the key's entry, if it has one
   * @param {string} key
   * @param {Buffer} value
   * @param {number} expiresAt
   */
  store(old, key, value, expiresAt) {
    if (old === undefined) {
      this.table.set(key, { key, value, expiresAt });
    } else {
      // Overwritten in place: a key SET over and over allocates no entry. A reply still holding
      // the old value holds the Buffer, not the entry.
      if (old.expiresAt !== 0) this.volatile -= 1;
      old.value = value;
      old.expiresAt = expiresAt;
    }
    if (expiresAt !== 0) {
      this.volatile += 1;
      this.push(expiresAt, key);
    }
  }

  /**
   * Deletes `key` if it exists and has not expired.
   * @param {string} key
   * @param {number} now
   * @returns {boolean} whether a live key was deleted
   */
  delete(key, now) {
    const entry = this.lookup(key, now);
    if (entry === undefined) return false;
    this.remove(key, entry);
    return true;
  }

  flush() {
    this.table.clear();
    this.heap = [];
    this.volatile = 0;
  }

  /**
   * Drops keys whose deadline has passed, spending at most `budgetMs`.
   * @param {number} now
   * @param {number} [budgetMs]
   * @returns {number} keys dropped
   */
  sweep(now, budgetMs = 2) {
    const heap = this.heap;
    const started = performance.now();
    let dropped = 0;
    let steps = 0;
    while (heap.length > 0) {
      const top = /** @type {[number, string]} */ (heap[0]);
      if (top[0] > now) break;
      this.pop();
      const entry = this.table.get(top[1]);
      if (entry !== undefined && entry.expiresAt === top[0]) {
        this.remove(top[1], entry);
        this.expiredKeys += 1;
        dropped += 1;
      }
      steps += 1;
      if ((steps & 255) === 0 && performance.now() - started > budgetMs) break;
    }
    // Overwritten deadlines leave stale heap entries; rebuild when they dominate.
    if (heap.length > 1024 && heap.length > 2 * this.volatile) this.rebuildHeap();
    return dropped;
  }

  /**
   * @param {string} key
   * @param {Entry} entry
   */
  remove(key, entry) {
    this.table.delete(key);
    if (entry.expiresAt !== 0) this.volatile -= 1;
  }

  rebuildHeap() {
    /** @type {[number, string][]} */
    const entries = [];
    for (const [key, entry] of this.table.entries())
      if (entry.expiresAt !== 0) entries.push([entry.expiresAt, key]);
    entries.sort((a, b) => a[0] - b[0]); // a sorted array is a valid min-heap
    this.heap = entries;
  }

  /**
   * @param {number} at
   * @param {string} key
   */
  push(at, key) {
    const heap = this.heap;
    let i = heap.length;
    heap.push([at, key]);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = /** @type {[number, string]} */ (heap[parent]);
      if (p[0] <= at) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = [at, key];
  }

  pop() {
    const heap = this.heap;
    const last = /** @type {[number, string]} */ (heap.pop());
    if (heap.length === 0) return;
    let i = 0;
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child =
        r < n &&
        /** @type {[number, string]} */ (heap[r])[0] < /** @type {[number, string]} */ (heap[l])[0]
          ? r
          : l;
      const c = /** @type {[number, string]} */ (heap[child]);
      if (c[0] >= last[0]) break;
      heap[i] = c;
      i = child;
    }
    heap[i] = last;
  }
}
