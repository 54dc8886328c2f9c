// The timers and immediates a test created and has not cleared, tracked with async_hooks.
//
// process.getActiveResourcesInfo() cannot tell them apart from vitest's own: vitest's runner
// keeps a refed ≤100 ms timer (its throttled task-update send) that may be pending when a test
// starts and gone when it ends, which would mask one leaked timer. So timers are counted by
// origin instead: every Timeout / Immediate created since since() was last called, unless the
// code that created it is vitest's, still refed and not yet fired or cleared.
import { createHook } from 'node:async_hooks';

type TimerType = 'Timeout' | 'Immediate';

interface Tracked {
  type: TimerType;
  /** Node's Timeout / Immediate: `_destroyed` once it fired (non-repeating) or was cleared. */
  resource: { hasRef?: () => boolean; _destroyed?: boolean };
}

const live = new Map<number, Tracked>();

/** A stack frame of vitest's own code (its runner, its worker), not of a test or of iomux. */
const VITEST_FRAME =
  /node_modules[/\\](?:\.pnpm[/\\][^/\\]+[/\\]node_modules[/\\])?(?:@vitest|vitest)[/\\]/;

/** The first frame below the timer's constructor: the code that called setTimeout & co. */
function creatorFrame(stack: string): string {
  const frames = stack.split('\n').slice(1);
  return (
    frames.find((f) => !f.includes('node:') && !f.includes('live-timers')) ?? '(no user frame)'
  );
}

createHook({
  init(asyncId, type, _triggerId, resource) {
    if (type !== 'Timeout' && type !== 'Immediate') return;
    if (VITEST_FRAME.test(creatorFrame(new Error().stack ?? ''))) return;
    live.set(asyncId, { type, resource });
  },
  destroy(asyncId) {
    live.delete(asyncId);
  },
}).enable();

/** Starts a new count: timers created before now are no longer tracked. */
export function trackTimersFromNow(): void {
  live.clear();
}

/** Refed timers and immediates created since trackTimersFromNow(), by type. */
export function liveTimers(): Map<TimerType, number> {
  const counts = new Map<TimerType, number>();
  for (const { type, resource } of live.values()) {
    // async_hooks reports destroy later, in a batch; Node marks the object at once.
    if (resource._destroyed === true) continue;
    if (resource.hasRef?.() === false) continue; // an unref'd timer keeps nothing alive
    counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}
