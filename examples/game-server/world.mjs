// The authoritative simulation: a walled grid, players steered by their inputs, NPCs walking
// A* paths computed by worker threads, and the per-tick snapshot sent to clients.
import { DIR, ENTITY_BYTES, NPC_FLAG, SUBCELL, writeEntity } from './protocol.mjs';

const PLAYER_SPEED = 6; // cells per second
const NPC_SPEED = 4;
/** Side of an area-of-interest region, in cells. */
export const REGION = 16;

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class World {
  constructor({ width = 256, height = 256, seed = 1, npcs = 64 } = {}) {
    this.width = width;
    this.height = height;
    this.random = mulberry32(seed);
    this.sharedWalls = new SharedArrayBuffer(width * height);
    this.walls = new Uint8Array(this.sharedWalls);
    this.buildWalls();
    this.players = new Map();
    this.nextPlayerId = 1;
    this.npcs = [];
    for (let i = 0; i < npcs; i += 1) {
      const [x, y] = this.freeCell();
      this.npcs.push({
        index: i,
        id: (NPC_FLAG | i) >>> 0,
        x: x + 0.5,
        y: y + 0.5,
        path: null,
        step: 0,
        pending: false,
      });
    }
    this.regionsX = Math.ceil(width / REGION);
    this.regionsY = Math.ceil(height / REGION);
    this.regionCounts = new Int32Array(this.regionsX * this.regionsY);
    this.regionStarts = new Int32Array(this.regionsX * this.regionsY + 1);
    this.regionFill = new Int32Array(this.regionsX * this.regionsY);
    // Scratch space of visibleInto() when it has to choose the nearest entities.
    this.candidateDistance = new Float64Array(1024);
    this.candidateOffset = new Int32Array(1024);
    this.candidateOrder = new Uint32Array(1024);
    /** Whether the last visibleInto() call had to leave entities out. */
    this.lastCapped = false;
  }

  /** What the worker threads need: the grid, shared rather than copied. */
  workerData() {
    return { width: this.width, height: this.height, walls: this.sharedWalls };
  }

  buildWalls() {
    const { width, height, walls, random } = this;
    for (let x = 0; x < width; x += 1) walls[x] = walls[(height - 1) * width + x] = 1;
    for (let y = 0; y < height; y += 1) walls[y * width] = walls[y * width + width - 1] = 1;
    const count = Math.floor((width * height) / 200);
    for (let i = 0; i < count; i += 1) {
      const horizontal = random() < 0.5;
      const length = 2 + Math.floor(random() * 12);
      const x0 = Math.floor(random() * width);
      const y0 = Math.floor(random() * height);
      for (let k = 0; k < length; k += 1) {
        const x = horizontal ? x0 + k : x0;
        const y = horizontal ? y0 : y0 + k;
        if (x < width && y < height) walls[y * width + x] = 1;
      }
    }
  }

  isWall(x, y) {
    const cx = Math.floor(x);
    const cy = Math.floor(y);
    if (cx < 0 || cy < 0 || cx >= this.width || cy >= this.height) return true;
    return this.walls[cy * this.width + cx] === 1;
  }

  freeCell() {
    for (;;) {
      const x = Math.floor(this.random() * this.width);
      const y = Math.floor(this.random() * this.height);
      if (this.walls[y * this.width + x] === 0) return [x, y];
    }
  }

  /** Adds a player at a free cell; `peer` is the transport's handle (a connection, an address). */
  addPlayer(peer) {
    const [x, y] = this.freeCell();
    const player = {
      id: this.nextPlayerId++,
      x: x + 0.5,
      y: y + 0.5,
      dir: DIR.NONE,
      ackSeq: 0,
      peer,
      slow: false,
    };
    this.players.set(player.id, player);
    return player;
  }

  removePlayer(id) {
    this.players.delete(id);
  }

  /** Applies an input: the newest `seq` wins; inputs arrive between ticks and count at the next. */
  input(player, seq, direction) {
    if (seq <= player.ackSeq || direction > DIR.RIGHT) return;
    player.ackSeq = seq;
    player.dir = direction;
  }

  /** One fixed simulation step of `dt` seconds. */
  step(dt) {
    for (const p of this.players.values()) {
      if (p.dir === DIR.NONE) continue;
      const d = PLAYER_SPEED * dt;
      const nx = p.x + (p.dir === DIR.RIGHT ? d : p.dir === DIR.LEFT ? -d : 0);
      const ny = p.y + (p.dir === DIR.DOWN ? d : p.dir === DIR.UP ? -d : 0);
      if (!this.isWall(nx, ny)) {
        p.x = nx;
        p.y = ny;
      }
    }
    const d = NPC_SPEED * dt;
    for (const npc of this.npcs) {
      if (npc.path === null) continue;
      let budget = d;
      while (budget > 0 && npc.step < npc.path.length) {
        const tx = npc.path[npc.step] + 0.5;
        const ty = npc.path[npc.step + 1] + 0.5;
        const dist = Math.abs(tx - npc.x) + Math.abs(ty - npc.y);
        if (dist <= budget) {
          npc.x = tx;
          npc.y = ty;
          npc.step += 2;
          budget -= dist;
        } else {
          npc.x += Math.sign(tx - npc.x) * Math.min(budget, Math.abs(tx - npc.x));
          npc.y += Math.sign(ty - npc.y) * Math.min(budget, Math.abs(ty - npc.y));
          budget = 0;
        }
      }
      if (npc.step >= npc.path.length) npc.path = null;
    }
  }

  /**
   * Path requests for up to `limit` idle NPCs, as [id, sx, sy, gx, gy] × n; they are marked as
   * waiting until {@link applyPaths} (or {@link pathsFailed}) sees the answer.
   */
  pathRequests(limit) {
    const chosen = [];
    for (const npc of this.npcs) {
      if (chosen.length >= limit) break;
      if (npc.path === null && !npc.pending) chosen.push(npc);
    }
    if (chosen.length === 0) return null;
    const players = [...this.players.values()];
    const requests = new Int32Array(chosen.length * 5);
    chosen.forEach((npc, i) => {
      npc.pending = true;
      let gx;
      let gy;
      const target =
        players.length > 0 && this.random() < 0.3
          ? players[Math.floor(this.random() * players.length)]
          : null;
      if (target !== null) {
        gx = Math.floor(target.x);
        gy = Math.floor(target.y);
      } else {
        // a free cell within 40 cells
        for (let tries = 0; ; tries += 1) {
          gx = Math.floor(npc.x) + Math.floor((this.random() - 0.5) * 80);
          gy = Math.floor(npc.y) + Math.floor((this.random() - 0.5) * 80);
          if (!this.isWall(gx, gy) || tries > 50) break;
        }
      }
      requests.set([npc.index, Math.floor(npc.x), Math.floor(npc.y), gx, gy], i * 5);
    });
    return requests;
  }

  /** Applies the answer of a findPaths task (ids in it are indices into `npcs`). */
  applyPaths(flat) {
    for (let o = 0; o < flat.length;) {
      const npc = this.npcs[flat[o]];
      const steps = flat[o + 1];
      if (npc !== undefined) {
        npc.pending = false;
        npc.path = steps > 0 ? flat.slice(o + 2, o + 2 + 2 * steps) : null;
        npc.step = 0;
      }
      o += 2 + 2 * steps;
    }
  }

  /** A findPaths task failed: its NPCs may ask again. */
  pathsFailed(requests) {
    for (let i = 0; i < requests.length; i += 5) {
      const npc = this.npcs[requests[i]];
      if (npc !== undefined) npc.pending = false;
    }
  }

  region(x, y) {
    const rx = Math.min(this.regionsX - 1, Math.max(0, Math.floor(x / REGION)));
    const ry = Math.min(this.regionsY - 1, Math.max(0, Math.floor(y / REGION)));
    return ry * this.regionsX + rx;
  }

  /**
   * Encodes every entity once per tick into one buffer, grouped by region:
   * `block(r)` is the region's slice, `count(r)` its entity count.
   */
  snapshot() {
    const counts = this.regionCounts;
    const starts = this.regionStarts;
    counts.fill(0);
    for (const p of this.players.values()) counts[this.region(p.x, p.y)] += 1;
    for (const n of this.npcs) counts[this.region(n.x, n.y)] += 1;
    let total = 0;
    for (let r = 0; r < counts.length; r += 1) {
      starts[r] = total;
      total += counts[r];
    }
    starts[counts.length] = total;
    // A fresh buffer per tick: TCP writes may still hold on to the previous one's blocks.
    const buffer = Buffer.allocUnsafe(total * ENTITY_BYTES);
    const fill = this.regionFill;
    fill.set(starts.subarray(0, counts.length));
    const put = (id, x, y) => {
      const r = this.region(x, y);
      writeEntity(buffer, fill[r] * ENTITY_BYTES, id, x, y);
      fill[r] += 1;
    };
    for (const p of this.players.values()) put(p.id, p.x, p.y);
    for (const n of this.npcs) put(n.id, n.x, n.y);
    return {
      total,
      all: buffer,
      starts,
      count: (r) => counts[r],
      block: (r) => buffer.subarray(starts[r] * ENTITY_BYTES, starts[r + 1] * ENTITY_BYTES),
    };
  }

  /**
   * Copies the entities `player` sees into `out` at `offset` (ENTITY_BYTES each) and returns how
   * many: with view 'aoi' those in the 3×3 regions around it, with 'all' everyone. When there are
   * more than `cap`, only the `cap` nearest are copied (the player itself first), nearest first,
   * and {@link World.lastCapped} is set (it is cleared otherwise). Allocates nothing.
   * @returns {number}
   */
  visibleInto(player, snapshot, view, out, offset, cap) {
    const { starts } = snapshot;
    let r0x = 0;
    let r1x = this.regionsX - 1;
    let r0y = 0;
    let r1y = this.regionsY - 1;
    if (view !== 'all') {
      const rx = Math.floor(player.x / REGION);
      const ry = Math.floor(player.y / REGION);
      r0x = Math.max(0, rx - 1);
      r1x = Math.min(this.regionsX - 1, rx + 1);
      r0y = Math.max(0, ry - 1);
      r1y = Math.min(this.regionsY - 1, ry + 1);
    }
    // Regions of one row are contiguous in the snapshot: one copy per row.
    let total = 0;
    for (let y = r0y; y <= r1y; y += 1)
      total += starts[y * this.regionsX + r1x + 1] - starts[y * this.regionsX + r0x];
    const all = snapshot.all;
    if (total <= cap) {
      // A byte loop, not Buffer#copy: that allocates a view per partial copy (3 per player and
      // tick, enough to make the young generation collect several times a second).
      let o = offset;
      for (let y = r0y; y <= r1y; y += 1) {
        const to = starts[y * this.regionsX + r1x + 1] * ENTITY_BYTES;
        for (let i = starts[y * this.regionsX + r0x] * ENTITY_BYTES; i < to; i += 1)
          out[o++] = all[i];
      }
      this.lastCapped = false;
      return total;
    }
    // Too many to fit: keep the nearest `cap`.
    if (this.candidateDistance.length < total) {
      const size = total * 2;
      this.candidateDistance = new Float64Array(size);
      this.candidateOffset = new Int32Array(size);
      this.candidateOrder = new Uint32Array(size);
    }
    const distance = this.candidateDistance;
    const at = this.candidateOffset;
    const px = Math.round(player.x * SUBCELL);
    const py = Math.round(player.y * SUBCELL);
    let n = 0;
    for (let y = r0y; y <= r1y; y += 1) {
      const to = starts[y * this.regionsX + r1x + 1] * ENTITY_BYTES;
      for (let o = starts[y * this.regionsX + r0x] * ENTITY_BYTES; o < to; o += ENTITY_BYTES) {
        const dx = all.readUInt16LE(o + 4) - px;
        const dy = all.readUInt16LE(o + 6) - py;
        distance[n] = all.readUInt32LE(o) === player.id ? -1 : dx * dx + dy * dy;
        at[n] = o;
        n += 1;
      }
    }
    const order = this.candidateOrder.subarray(0, n);
    for (let i = 0; i < n; i += 1) order[i] = i;
    order.sort((a, b) => distance[a] - distance[b]);
    for (let i = 0, o = offset; i < cap; i += 1) {
      const from = at[order[i]];
      for (let k = 0; k < ENTITY_BYTES; k += 1) out[o++] = all[from + k];
    }
    this.lastCapped = true;
    return cap;
  }
}
