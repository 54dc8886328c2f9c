// A* over a 4-connected grid of walls (1 = wall). Pure and allocation-free per search: one
// searcher per thread reuses its arrays. Used by the worker threads (pathfinding.mjs).

/**
 * Creates a searcher for grids of `width` × `height` cells.
 * @param {number} width
 * @param {number} height
 * @returns {(walls: Uint8Array, sx: number, sy: number, gx: number, gy: number, maxExpanded?: number) => { path: Int32Array, expanded: number }}
 */
export function createSearcher(width, height) {
  const cells = width * height;
  const cost = new Int32Array(cells);
  const parent = new Int32Array(cells);
  const seen = new Uint32Array(cells); // generation in which `cost` / `parent` were set
  const done = new Uint32Array(cells); // generation in which the cell was expanded
  const heapCell = new Int32Array(cells * 4 + 1);
  const heapKey = new Int32Array(cells * 4 + 1);
  let generation = 0;
  let size = 0;

  function push(cell, key) {
    let i = size++;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (heapKey[up] <= key) break;
      heapCell[i] = heapCell[up];
      heapKey[i] = heapKey[up];
      i = up;
    }
    heapCell[i] = cell;
    heapKey[i] = key;
  }

  function pop() {
    const top = heapCell[0];
    size -= 1;
    const cell = heapCell[size];
    const key = heapKey[size];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && heapKey[child + 1] < heapKey[child]) child += 1;
      if (heapKey[child] >= key) break;
      heapCell[i] = heapCell[child];
      heapKey[i] = heapKey[child];
      i = child;
    }
    heapCell[i] = cell;
    heapKey[i] = key;
    return top;
  }

  /**
   * Finds a shortest path from (sx, sy) to (gx, gy). Returns `{ path, expanded }`: `path` is an
   * Int32Array of cell coordinates [x1, y1, x2, y2, ...] from the first step to the goal (empty
   * when unreachable or when more than `maxExpanded` cells would be expanded).
   */
  return function findPath(walls, sx, sy, gx, gy, maxExpanded = cells) {
    generation += 1;
    if (generation === 0xffffffff) {
      seen.fill(0);
      done.fill(0);
      generation = 1;
    }
    const start = sy * width + sx;
    const goal = gy * width + gx;
    if (walls[start] === 1 || walls[goal] === 1) return { path: new Int32Array(0), expanded: 0 };
    size = 0;
    cost[start] = 0;
    parent[start] = -1;
    seen[start] = generation;
    push(start, Math.abs(gx - sx) + Math.abs(gy - sy));
    let expanded = 0;
    let found = start === goal;
    while (size > 0 && !found) {
      const cell = pop();
      if (done[cell] === generation) continue;
      done[cell] = generation;
      expanded += 1;
      if (cell === goal) {
        found = true;
        break;
      }
      if (expanded > maxExpanded) break;
      const x = cell % width;
      const y = (cell - x) / width;
      const nextCost = cost[cell] + 1;
      for (let k = 0; k < 4; k += 1) {
        const nx = k === 0 ? x + 1 : k === 1 ? x - 1 : x;
        const ny = k === 2 ? y + 1 : k === 3 ? y - 1 : y;
        if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
        const next = ny * width + nx;
        if (walls[next] === 1 || done[next] === generation) continue;
        if (seen[next] === generation && cost[next] <= nextCost) continue;
        seen[next] = generation;
        cost[next] = nextCost;
        parent[next] = cell;
        push(next, nextCost + Math.abs(gx - nx) + Math.abs(gy - ny));
      }
    }
    if (!found) return { path: new Int32Array(0), expanded };
    const steps = cost[goal];
    const path = new Int32Array(steps * 2);
    for (let cell = goal, i = steps - 1; i >= 0; i -= 1, cell = parent[cell]) {
      path[2 * i] = cell % width;
      path[2 * i + 1] = Math.floor(cell / width);
    }
    return { path, expanded };
  };
}
