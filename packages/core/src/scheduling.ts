import { constants as osConstants } from 'node:os';
import { AUTO_ORDER, getBackendModule } from './backend.js';
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
 * Moves the calling thread (only it: Linux schedules threads) to `policy`. {@link WorkerPool}
 * calls it in each worker thread when its `scheduling` option is set.
 * @throws {@link IomuxError} `IOMUX_INVALID_ARGUMENT` for an unknown policy; `ENOSYS` off Linux or
 * when no backend addon is loadable here; `EPERM` when leaving `'idle'` without the privilege.
 */
export function setThreadScheduling(policy: ThreadScheduling): void {
  if (!isThreadScheduling(policy))
    throw new IomuxError(
      'IOMUX_INVALID_ARGUMENT',
      `scheduling must be one of ${POLICIES.join(', ')}, got ${String(policy)}`,
    );
  const names = AUTO_ORDER[process.platform] ?? [];
  const module = names.map(getBackendModule).find((b) => b.isAvailable());
  const addon = module?.addon();
  if (addon?.setThreadScheduling === undefined)
    throw socketError(
      osConstants.errno.ENOSYS,
      'sched_setscheduler',
      `(no iomux addon can set it on ${process.platform})`,
    );
  const rc = addon.setThreadScheduling(policy);
  if (rc < 0) throw socketError(rc, 'sched_setscheduler', `(policy ${policy})`);
}
