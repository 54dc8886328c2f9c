// The key space's hash table, keyed by bytes: a command's key is looked up by hashing and
// comparing the request's bytes in place, so finding a key makes no string (a string costs a
// native call, and a Map hashes each new string again). A key's string, one char per byte
// (latin1), is made once, when the key is inserted. Open addressing with linear probing, a
// power-of-two capacity kept at most half full, deletion by backward shift (no tombstones).
//
// Hostile keys: the hash is seeded per process, but it is not SipHash. A probe run longer than
// `maxProbe` means keys collide by design (or by rare luck); the table then moves its keys to a
// Map, whose string hash V8 seeds itself, and stays one: crafted collisions cost what a Map
// costs, no more.

import { randomBytes } from 'node:crypto';

/** @typedef {import('node:buffer').Buffer} Buffer */

/** Longest probe run before the table moves to a Map (at half load, runs are a few slots). */
const MAX_PROBE = 128;
const FIRST_CAPACITY = 16;

// `buf.toString('latin1', start, end)` without its encoding lookup and argument checks: Buffer's
// own latin1Slice, which every Node version iomux supports has.
export const latin1 = (
  /** @type {Buffer} */ b,
  /** @type {number} */ start,
  /** @type {number} */ end,
) =>
  /** @type {Buffer & { latin1Slice(s: number, e: number): string }} */ (b).latin1Slice(start, end);

/** murmur3's finalizer: spreads the bits of an FNV-1a state so the low ones index well. */
function finish(/** @type {number} */ h) {
  let x = h ^ (h >>> 16);
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  return x ^ (x >>> 16);
}

/**
 * @template V
 */
export class KeyTable {
  /** @param {{ maxProbe?: number, seed?: number }} [options] tests pass a small maxProbe */
  constructor(options = {}) {
    this.maxProbe = options.maxProbe ?? MAX_PROBE;
    this.seed = options.seed ?? randomBytes(4).readInt32LE(0);
    /** @type {Map<string, V> | undefined} set once the table moved to a Map */
    this.map = undefined;
    /** Keys in the open-addressing arrays (none once the table moved to a Map). */
    this.count = 0;
    /** findSlot's results besides the slot: the free slot it ended at, the slots it looked at */
    this.free = 0;
    this.probes = 0;
    this.mask = FIRST_CAPACITY - 1;
    /** @type {(string | undefined)[]} */
    this.keys = [];
    /** @type {(V | undefined)[]} */
    this.values = [];
    this.hashes = new Int32Array(0);
    this.allocate(FIRST_CAPACITY);
  }

  get size() {
    return this.map === undefined ? this.count : this.map.size;
  }

  /** @param {number} capacity a power of two */
  allocate(capacity) {
    this.mask = capacity - 1;
    this.keys = new Array(capacity).fill(undefined);
    this.values = new Array(capacity).fill(undefined);
    this.hashes = new Int32Array(capacity);
  }

  /**
   * @param {Buffer} buf
   * @param {number} start
   * @param {number} end
   */
  hashBytes(buf, start, end) {
    let h = this.seed ^ (end - start);
    for (let i = start; i < end; i += 1)
      h = Math.imul(h ^ /** @type {number} */ (buf[i]), 0x01000193);
    return finish(h);
  }

  /** The same hash as hashBytes of the key's latin1 bytes. @param {string} key */
  hashString(key) {
    let h = this.seed ^ key.length;
    for (let i = 0; i < key.length; i += 1) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return finish(h);
  }

  /**
   * The value of the key whose bytes are `buf[start, end)`.
   * @param {Buffer} buf
   * @param {number} start
   * @param {number} end
   * @returns {V | undefined}
   */
  getBytes(buf, start, end) {
    if (this.map !== undefined) return this.map.get(latin1(buf, start, end));
    const h = this.hashBytes(buf, start, end);
    const n = end - start;
    const { keys, hashes, mask } = this;
    for (let i = h & mask, probes = 0; ; i = (i + 1) & mask, probes += 1) {
      const key = keys[i];
      if (key === undefined) return undefined;
      if (probes > this.maxProbe) return this.toMap().get(latin1(buf, start, end));
      if (hashes[i] === h && key.length === n) {
        let k = 0;
        while (k < n && key.charCodeAt(k) === buf[start + k]) k += 1;
        if (k === n) return this.values[i];
      }
    }
  }

  /**
   * The slot of `key`, or -1. Leaves in `free` the empty slot that ended the search (where the
   * key would go) and in `probes` how many slots it looked at.
   * @param {string} key
   * @param {number} h its hash
   */
  findSlot(key, h) {
    const { keys, hashes, mask } = this;
    let probes = 0;
    for (let i = h & mask; ; i = (i + 1) & mask, probes += 1) {
      const k = keys[i];
      if (k === undefined) {
        this.free = i;
        this.probes = probes;
        return -1;
      }
      if (hashes[i] === h && k === key) {
        this.probes = probes;
        return i;
      }
    }
  }

  /** @param {string} key */
  get(key) {
    if (this.map !== undefined) return this.map.get(key);
    const slot = this.findSlot(key, this.hashString(key));
    if (this.probes > this.maxProbe) return this.toMap().get(key);
    return slot >= 0 ? this.values[slot] : undefined;
  }

  /** @param {string} key */
  has(key) {
    return this.get(key) !== undefined;
  }

  /**
   * @param {string} key
   * @param {V} value
   */
  set(key, value) {
    if (this.map !== undefined) {
      this.map.set(key, value);
      return;
    }
    const h = this.hashString(key);
    const slot = this.findSlot(key, h);
    if (this.probes > this.maxProbe) {
      this.toMap().set(key, value);
    } else if (slot >= 0) {
      this.values[slot] = value;
    } else {
      this.keys[this.free] = key;
      this.values[this.free] = value;
      this.hashes[this.free] = h;
      this.count += 1;
      if (this.count * 2 > this.keys.length) this.grow();
    }
  }

  /**
   * @param {string} key
   * @returns {boolean} whether it was there
   */
  delete(key) {
    if (this.map !== undefined) return this.map.delete(key);
    let i = this.findSlot(key, this.hashString(key));
    if (i < 0) return false;
    // Backward shift: each entry after the hole that may sit in it (its home slot is not
    // cyclically within (hole, its slot]) moves into it, until an empty slot ends the run.
    const { keys, values, hashes, mask } = this;
    for (let j = (i + 1) & mask; keys[j] !== undefined; j = (j + 1) & mask) {
      const home = /** @type {number} */ (hashes[j]) & mask;
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      keys[i] = keys[j];
      values[i] = values[j];
      hashes[i] = /** @type {number} */ (hashes[j]);
      i = j;
    }
    keys[i] = undefined;
    values[i] = undefined;
    this.count -= 1;
    return true;
  }

  clear() {
    this.map = undefined;
    this.count = 0;
    this.allocate(FIRST_CAPACITY);
  }

  /** @returns {IterableIterator<[string, V]>} */
  *entries() {
    if (this.map !== undefined) {
      yield* this.map.entries();
      return;
    }
    const { keys, values } = this;
    for (let i = 0; i < keys.length; i += 1) {
      const key = keys[i];
      if (key !== undefined) yield [key, /** @type {V} */ (values[i])];
    }
  }

  grow() {
    const { keys, values, hashes } = this;
    this.allocate(keys.length * 2);
    const mask = this.mask;
    for (let j = 0; j < keys.length; j += 1) {
      const key = keys[j];
      if (key === undefined) continue;
      const h = /** @type {number} */ (hashes[j]);
      let i = h & mask;
      while (this.keys[i] !== undefined) i = (i + 1) & mask;
      this.keys[i] = key;
      this.values[i] = values[j];
      this.hashes[i] = h;
    }
  }

  /** Moves every key to a Map, for good. */
  toMap() {
    /** @type {Map<string, V>} */
    const map = new Map(this.entries());
    this.map = map;
    this.count = 0;
    this.allocate(1);
    return map;
  }
}
