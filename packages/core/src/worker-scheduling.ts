/**
 * Preloaded (`--require`) into {@link WorkerPool} threads when its `scheduling` or `affinity`
 * option is set: moves the thread to that policy and onto those CPUs before any task runs. A
 * failure is a process warning, not a crash: the tasks still run, at normal priority or on any
 * CPU.
 * @module
 * @internal
 */
import { isMainThread } from 'node:worker_threads';
import { setThreadAffinity, setThreadScheduling, type ThreadScheduling } from './scheduling.js';

/** The environment variables a pool uses to pass its `scheduling` and `affinity` options. */
const POLICY_VARIABLE = 'IOMUX_WORKER_SCHEDULING';
const AFFINITY_VARIABLE = 'IOMUX_WORKER_AFFINITY';
const policy = process.env[POLICY_VARIABLE];
const affinity = process.env[AFFINITY_VARIABLE];
if (!isMainThread && policy !== undefined && policy !== '') {
  try {
    setThreadScheduling(policy as ThreadScheduling);
  } catch (err) {
    process.emitWarning(
      `iomux worker thread keeps normal scheduling: ${(err as Error).message}`,
      'IomuxWarning',
    );
  }
}
if (!isMainThread && affinity !== undefined && affinity !== '') {
  try {
    // The pool checked the list; a comma-separated list of CPU numbers.
    setThreadAffinity(affinity.split(',').map(Number));
  } catch (err) {
    process.emitWarning(
      `iomux worker thread keeps its CPU affinity: ${(err as Error).message}`,
      'IomuxWarning',
    );
  }
}
