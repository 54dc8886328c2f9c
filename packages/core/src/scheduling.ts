import { constants as osConstants } from 'node:os';
import { AUTO_ORDER, getBackendModule, type NativeAddon } from './backend.js';
import { IomuxError, socketError } from './errors.js';

/**
 * A Linux scheduling policy for a thread:
 * - `'normal'`: `SCHED_OTHER`, the default time sharing.
 * - `'batch'`: `SCHED_BATCH`, CPU-bound work that is never favoured on wake-up.
 * - `'idle'`: `SCHED_IDLE`, runs only when no normal thread wants the core, and yields to one at
 *   once when it wakes up. For CPU work that must never delay the reactor's thread; on a machine
 *   busy with other normal work it can be starved.
 */
export type ThreadScheduling = 'normal' | 'batch' | 'idle';

const POLICIES: readonly ThreadScheduling[] = ['normal', 'batch', 'idle'];

/** True when `value` names a {@link ThreadScheduling}. */
export function isThreadScheduling(value: unknown): value is ThreadScheduling {
  return POLICIES.includes(value as ThreadScheduling);
}

/**
 * A Linux real-time scheduling policy, for the one latency-critical thread of a process (a game
 * server's tick thread) on a core of its own:
 * - `'fifo'`: `SCHED_FIFO`, runs as soon as it wakes, ahead of every normal thread on its CPU,
 *   until it blocks.
 * - `'rr'`: `SCHED_RR`, the same with a time slice among real-time threads of equal priority.
 *
 * A real-time thread that never blocks starves its core's normal threads (the kernel keeps back
 * 5 % of each second for them by default, `kernel.sched_rt_runtime_us`), so give it only to a
 * thread that waits for I/O or timers, such as the reactor's.
 */
export type RealtimeScheduling = 'fifo' | 'rr';

const REALTIME_POLICIES: readonly RealtimeScheduling[] = ['fifo', 'rr'];

/**
 * Moves the calling thread (only it: Linux schedules threads) to `policy`. {@link WorkerPool}
 * calls it in each worker thread when its `scheduling` option is set.
 *
 * A real-time policy takes a `priority` from 1 to 99 (among real-time threads the higher runs
 * first; any of them runs before every normal thread). Threads the caller starts afterwards
 * (Workers, libuv's pool) do not inherit it (`SCHED_RESET_ON_FORK`). `setThreadScheduling('normal')`
 * moves the thread back.
 * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for an unknown policy or a priority out of
 * range; `ENOSYS` off Linux or when no backend addon is loadable here; `EPERM` when leaving
 * `'idle'`, or for a real-time policy, without the privilege (`CAP_SYS_NICE`, or an
 * `RLIMIT_RTPRIO` of at least `priority`).
 * @example
 * ```ts
 * import { setThreadAffinity, setThreadScheduling } from '@iomux/core';
 *
 * setThreadAffinity([0]); // the reactor's core, kept free of workers and other processes
 * setThreadScheduling('fifo', 10); // tick starts no longer wait for a normal thread on CPU 0
 * ```
 */
export function setThreadScheduling(
  policy: ThreadScheduling | RealtimeScheduling,
  priority?: number,
): void {
  const realtime = REALTIME_POLICIES.includes(policy as RealtimeScheduling);
  if (!realtime && !isThreadScheduling(policy))
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `scheduling must be one of ${[...POLICIES, ...REALTIME_POLICIES].join(', ')}, got ${policy}`,
    );
  const level = priority ?? NaN;
  if (realtime && !(Number.isInteger(level) && level >= 1 && level <= 99))
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `a ${policy} priority must be an integer from 1 to 99, got ${String(priority)}`,
    );
  if (!realtime && priority !== undefined && priority !== 0)
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `only the real-time policies take a priority; ${policy} got ${String(priority)}`,
    );
  const addon = threadAddon();
  if (addon?.setThreadScheduling === undefined)
    throw socketError(
      osConstants.errno.ENOSYS,
      'sched_setscheduler',
      `(no iomux addon can set it on ${process.platform})`,
    );
  const rc = addon.setThreadScheduling(policy, realtime ? level : 0);
  if (rc < 0)
    throw socketError(
      rc,
      'sched_setscheduler',
      realtime ? `(policy ${policy}, priority ${String(priority)})` : `(policy ${policy})`,
    );
}

/** The largest CPU number + 1 that {@link setThreadAffinity} takes (glibc's `CPU_SETSIZE`). */
const MAX_CPUS = 1024;

/** The first loadable backend addon of this platform, or undefined when none is. */
function threadAddon(): NativeAddon | undefined {
  const names = AUTO_ORDER[process.platform] ?? [];
  return names
    .map(getBackendModule)
    .find((b) => b.isAvailable())
    ?.addon();
}

/** Writes a CPU list the way `taskset -c` and `Cpus_allowed_list` do: `0-3,6`. */
function cpuRanges(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const ranges: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    ranges.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return ranges.join(',');
}

/**
 * Checks a CPU list for {@link setThreadAffinity} and the {@link WorkerPool} `affinity` option:
 * a non-empty array of integers from 0 to 1023. `what` names it in the error.
 * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` naming the bad value.
 * @internal
 */
export function checkCpuList(cpus: unknown, what: string): asserts cpus is readonly number[] {
  if (!Array.isArray(cpus))
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `${what} must be an array of CPU numbers, got ${String(cpus)}`,
    );
  if (cpus.length === 0)
    throw new IomuxError('IOMUX_INVALID_ARGUMENT', `${what} needs at least one CPU, got []`);
  for (const cpu of cpus as unknown[])
    if (typeof cpu !== 'number' || !Number.isInteger(cpu) || cpu < 0 || cpu >= MAX_CPUS)
      throw new IomuxError(
        'IOMUX_INVALID_ARGUMENT',
        `${what}: CPU numbers are integers from 0 to ${MAX_CPUS - 1}, got ${String(cpu)}`,
      );
}

/**
 * The CPUs of `cpus` that the calling thread could not be pinned to (offline, or outside the
 * process's cpuset or `taskset`), with the CPUs it could, for an error message; undefined when
 * this platform cannot tell.
 */
function refusedCpus(
  addon: NativeAddon,
  cpus: readonly number[],
): { refused: number[]; allowed: number[] } | undefined {
  const allowed = addon.allowedCpus?.();
  if (!Array.isArray(allowed)) return undefined;
  return { refused: cpus.filter((cpu) => !allowed.includes(cpu)), allowed };
}

/**
 * Checks that every CPU of `cpus` is one the process may run on, on platforms that can pin
 * threads (Linux); elsewhere nothing is checked (each worker then warns that it cannot pin).
 * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` naming the CPUs that are not.
 * @internal
 */
export function checkCpusAllowed(cpus: readonly number[], what: string): void {
  const addon = threadAddon();
  const check = addon === undefined ? undefined : refusedCpus(addon, cpus);
  if (check !== undefined && check.refused.length > 0) throw notAllowed(what, check);
}

function notAllowed(what: string, check: { refused: number[]; allowed: number[] }): IomuxError {
  const them = check.refused.length === 1 ? 'CPU' : 'CPUs';
  return new IomuxError(
    'IOMUX_INVALID_ARGUMENT',
    `${what}: ${them} ${cpuRanges(check.refused)} not among the CPUs this process may run on ` +
      `(${cpuRanges(check.allowed)}; offline CPUs, a cpuset or taskset narrow it)`,
    { errno: osConstants.errno.EINVAL, syscall: 'sched_setaffinity' },
  );
}

/**
 * Pins the calling thread (only it: Linux schedules threads) to exactly the CPUs of `cpus`, the
 * `sched_setaffinity` of Linux. With the reactor's thread on one core and the bots, workers or
 * other processes on the others, no runnable thread waits for a core the reactor needs: the
 * tick-start jitter of a {@link TickLoop} then depends on the reactor's own work. Threads started
 * afterwards by this one inherit the mask; {@link WorkerPool} sets its workers' with its
 * `affinity` option. The other threads of the process (libuv's pool, V8's GC helpers) are left as
 * they are: {@link setOtherThreadsAffinity} moves them.
 * @param cpus CPU numbers as the kernel counts them (those of `taskset -c` and `/proc/cpuinfo`).
 * @example
 * ```ts
 * import { setThreadAffinity, WorkerPool } from '@iomux/core';
 * // The reactor (this thread) on CPU 0; the CPU-bound workers on the other cores.
 * setThreadAffinity([0]);
 * const pool = new WorkerPool({ filename, affinity: [1, 2, 3], scheduling: 'idle' });
 * ```
 * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for an empty list, a value that is not a
 * CPU number, or a CPU this process may not run on (offline, or outside its cpuset or
 * `taskset`); the thread then keeps its previous affinity. `ENOSYS` off Linux (macOS has no hard
 * affinity) or when no backend addon is loadable here.
 */
export function setThreadAffinity(cpus: readonly number[]): void {
  pinThreads(cpus, 'setThreadAffinity');
}

/**
 * Pins every other thread of this process that runs now to exactly the CPUs of `cpus`; the
 * calling thread keeps its own mask. The threads {@link setThreadAffinity} leaves alone are the
 * ones that steal the reactor's core: V8's platform workers (its concurrent GC marking and
 * compilers, shared by every isolate, so a busy Worker's garbage is collected on them), libuv's
 * threadpool and Worker threads. Pinned here, they keep off a reactor pinned to other CPUs.
 *
 * Only threads that exist now are moved: a thread started later inherits the mask of the thread
 * that starts it. libuv starts its pool on the first `fs`, `dns.lookup`, `crypto` or `zlib` call
 * that needs it, from the thread making it; a {@link WorkerPool} pins its workers with its own
 * `affinity` option.
 * @param cpus CPU numbers as the kernel counts them (those of `taskset -c`).
 * @returns How many threads were pinned (a thread that exited meanwhile is not counted).
 * @example
 * ```ts
 * import { setOtherThreadsAffinity, setThreadAffinity } from '@iomux/core';
 * // The reactor (this thread) alone on CPU 0; V8's GC helpers, libuv's pool and the workers on 1.
 * setOtherThreadsAffinity([1]);
 * setThreadAffinity([0]);
 * ```
 * @throws {@link IomuxError} as {@link setThreadAffinity} does, for the same lists; a CPU this
 * process may not run on is refused before any thread is moved.
 */
export function setOtherThreadsAffinity(cpus: readonly number[]): number {
  return pinThreads(cpus, 'setOtherThreadsAffinity');
}

/** setThreadAffinity and setOtherThreadsAffinity: checks, the native call, its error. */
function pinThreads(
  cpus: readonly number[],
  what: 'setThreadAffinity' | 'setOtherThreadsAffinity',
): number {
  checkCpuList(cpus, what);
  // One thread's mask is put back when the kernel narrows it; many are not, so look first.
  if (what === 'setOtherThreadsAffinity') checkCpusAllowed(cpus, what);
  const addon = threadAddon();
  const rc =
    what === 'setThreadAffinity'
      ? addon?.setThreadAffinity?.(cpus)
      : addon?.setOtherThreadsAffinity?.(cpus);
  if (addon === undefined || rc === undefined)
    throw socketError(
      osConstants.errno.ENOSYS,
      'sched_setaffinity',
      `(no iomux addon can set it on ${process.platform})`,
    );
  if (rc === -osConstants.errno.EINVAL) {
    const check = refusedCpus(addon, cpus);
    if (check !== undefined && check.refused.length > 0) throw notAllowed(what, check);
  }
  if (rc < 0) throw socketError(rc, 'sched_setaffinity', `(CPUs ${cpuRanges(cpus)})`);
  return rc;
}

/**
 * The CPUs the calling thread may run on now, ascending: what {@link setThreadAffinity} set, or
 * what it inherited (from `taskset`, or from the thread that started it).
 * @example
 * ```ts
 * setThreadAffinity([1]);
 * getThreadAffinity(); // [1]
 * ```
 * @throws {@link IomuxError} `ENOSYS` off Linux or when no backend addon is loadable here.
 */
export function getThreadAffinity(): number[] {
  const addon = threadAddon();
  const cpus = addon?.threadAffinity?.() ?? -osConstants.errno.ENOSYS;
  if (typeof cpus === 'number') throw socketError(cpus, 'sched_getaffinity');
  return cpus;
}
