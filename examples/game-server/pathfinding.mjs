// Worker-thread module of the game server's WorkerPool: CPU-heavy path-finding off the reactor
// thread. workerData = { width, height, walls, yieldCpu } where walls is a SharedArrayBuffer
// (1 = wall), so the grid is shared, not copied, with every worker.
import { workerData } from 'node:worker_threads';
import { createSearcher } from './astar.mjs';

const { width, height } = workerData;
const walls = new Uint8Array(workerData.walls);
const findPath = createSearcher(width, height);

// Yield points. A search takes ~0.3 ms of CPU; after each one the worker sleeps for a moment
// (futex wait, ~10–60 µs), so the reactor's thread, when it wakes up on a core this worker holds,
// gets it within a search rather than at the kernel's next scheduling tick (4 ms at HZ=250). On
// the development VM a SCHED_IDLE worker was measured keeping its core for up to a full tick
// after the reactor's thread became runnable. workerData.yieldCpu = false turns it off.
const yieldCpu = workerData.yieldCpu !== false;
const nap = new Int32Array(new SharedArrayBuffer(4));
function yieldPoint() {
  if (yieldCpu) Atomics.wait(nap, 0, 0, 0.01);
}

/**
 * Paths for a batch of NPCs. `requests` is an Int32Array of [id, sx, sy, gx, gy] × n. Returns an
 * Int32Array of [id, steps, x1, y1, ..., x_steps, y_steps] × n (steps 0 when unreachable).
 */
export function findPaths({ requests }) {
  const out = [];
  let total = 0;
  for (let i = 0; i + 4 < requests.length; i += 5) {
    const { path } = findPath(
      walls,
      requests[i + 1],
      requests[i + 2],
      requests[i + 3],
      requests[i + 4],
    );
    out.push(requests[i], path);
    total += 2 + path.length;
    yieldPoint();
  }
  const flat = new Int32Array(total);
  let o = 0;
  for (let i = 0; i < out.length; i += 2) {
    const path = out[i + 1];
    flat[o] = out[i];
    flat[o + 1] = path.length / 2;
    flat.set(path, o + 2);
    o += 2 + path.length;
  }
  return flat;
}

/**
 * Background planning load: runs A* between random free cells for `ms` milliseconds and reports
 * how much it did (the "CPU-heavy work" that keeps the workers saturated in the load runs).
 */
export function plan({ ms, seed }) {
  let state = seed >>> 0 || 1;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
  const freeCell = () => {
    for (;;) {
      const x = Math.floor(random() * width);
      const y = Math.floor(random() * height);
      if (walls[y * width + x] === 0) return [x, y];
    }
  };
  const end = performance.now() + ms;
  let searches = 0;
  let expanded = 0;
  while (performance.now() < end) {
    const [sx, sy] = freeCell();
    const [gx, gy] = freeCell();
    expanded += findPath(walls, sx, sy, gx, gy).expanded;
    searches += 1;
    yieldPoint();
  }
  return { searches, expanded };
}
